"""``plan_period_s``: plans start on the arrival of the frame that opens a period, in camera time."""

import pytest
from rclpy.parameter import Parameter
from std_msgs.msg import String

from conftest import wait_for
from ros_probe import Probe, scene
from vans_ros.plan_messages import time_to_seconds
from vans_ros.planner_node import PlannerNode

PERIOD = 0.05  # the camera's, the control period


def test_plans_start_on_the_frame_that_opens_each_period(spinner, tiny_model):
    planner = spinner.add(PlannerNode(parameter_overrides=[
        Parameter("model_dir", value=str(tiny_model)), Parameter("plan_period_s", value=0.2)]))
    probe = spinner.add(Probe())
    probe.instruction_pub.publish(String(data="push the red button"))
    wait_for(lambda: planner.instruction == "push the red button", what="the instruction")

    def send(stamp_s):
        """One frame; returns once the node has taken it and any plan it started is published."""
        received = planner.frames_received
        probe.send_frame(scene(len(stamps)), stamp_s)
        stamps.append(stamp_s)
        wait_for(lambda: planner.frames_received > received, what="the frame")
        wait_for(planner.worker.idle, what="the planner")

    stamps = []
    for k in range(13):  # a 20 Hz camera with a little jitter, as the sim camera's timer gives
        send(2000.0 + k * PERIOD + (0.004 if k % 2 else -0.004))
    send(1000.0)  # the camera's clock went back (a replayed bag): plan on it, do not wait 1000 s
    wait_for(lambda: probe.count("action_plan") == 5, what="five plans")
    planned_on = [time_to_seconds(m.header.stamp) for m in probe.received["action_plan"]]
    # every fourth frame, at once (stamps travel as integer nanoseconds)
    assert planned_on == pytest.approx([stamps[0], stamps[4], stamps[8], stamps[12], 1000.0], abs=1e-6)
    assert planner.worker.requests_dropped == 0
