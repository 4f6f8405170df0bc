"""The planner node with a checkpoint whose IDM reads proprioception, over real rclpy + Fast DDS: it
plans only with a joint state stamped near the newest frame, plans with exactly that state, and
survives joint states it cannot use."""

import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from conftest import Spinner, wait_for
from ros_probe import RELIABLE, Probe, scene
from vans_ros.plan_messages import seconds_to_time, time_to_seconds, trajectory_to_actions
from vans_ros.planner_node import PlannerNode

JOINTS = ["ee_x", "ee_y", "ee_z", "gripper"]


@pytest.fixture(scope="module")
def loop(ros, tiny_state_model):
    spinner = Spinner()
    planner = spinner.add(PlannerNode(parameter_overrides=[
        Parameter("model_dir", value=str(tiny_state_model)), Parameter("plan_period_s", value=0.0),
        Parameter("diagnostics_period_s", value=0.2), Parameter("max_state_age_s", value=0.2)]))
    probe = spinner.add(Probe())
    state_pub = probe.create_publisher(JointState, "joint_states", RELIABLE)
    probe.instruction_pub.publish(String(data="push the red button"))
    wait_for(lambda: planner.instruction == "push the red button", what="the instruction")
    yield planner, probe, state_pub
    spinner.close()


def joint_state(stamp_s, position, names=JOINTS):
    # Reversed: the node must pick entries by name, not by position.
    order = list(range(len(names)))[::-1]
    return JointState(header=Header(stamp=seconds_to_time(stamp_s)), name=[names[i] for i in order],
                      position=[float(position[i]) for i in order])


def test_needs_and_reports_the_state_subscription(loop):
    planner, _, _ = loop
    assert planner.planner.needs_state
    assert planner.count_publishers("/joint_states") >= 1


def test_no_state_no_plan_then_plans_with_the_state_it_got(loop):
    planner, probe, state_pub = loop
    stamp = 2000.0
    probe.send_frame(scene(0), stamp)
    wait_for(lambda: planner.health.counts.get("no_state", 0) >= 1, what="the missing state to be reported")
    assert planner.worker.plans_done == 0
    client = probe.create_client(Trigger, "/planner/plan_once")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    wait_for(future.done, what="the plan_once response")
    assert not future.result().success and "joint state" in future.result().message
    probe.destroy_client(client)

    actions = {}
    for k, state in enumerate(([0.1, -0.1, 0.6, 1.0], [-0.3, 0.1, 0.45, 0.0])):
        stamp += 0.05
        state_pub.publish(joint_state(stamp, state))
        wait_for(lambda: planner._state is not None and planner._state[0] == pytest.approx(stamp), what="the state")
        done = planner.worker.plans_done
        probe.send_frame(scene(1), stamp)
        wait_for(lambda: planner.worker.plans_done > done and probe.count("action_plan")
                 and time_to_seconds(probe.latest("action_plan").header.stamp) >= stamp - 1e-6, what="a plan")
        got = trajectory_to_actions(probe.latest("action_plan"), planner.period_s, planner.max_step_m)
        # the same plan made directly, with the same context, seed and state
        seed = planner.params["seed"] + planner._plans_started - 1
        expected = planner.planner.plan(planner.context_buffer.snapshot(), "push the red button", seed=seed,
                                        state=np.array(state, np.float32)).actions
        np.testing.assert_allclose(got, expected, atol=1e-4)
        actions[k] = got
    assert np.abs(actions[0] - actions[1]).max() > 1e-3  # the state reached the IDM


BAD_STATES = {
    "missing_joint": lambda s: joint_state(s, [0.0, 0.0, 0.5], names=JOINTS[:3]),
    "length": lambda s: JointState(header=Header(stamp=seconds_to_time(s)), name=JOINTS, position=[0.0, 0.1]),
    "nan": lambda s: joint_state(s, [0.0, float("nan"), 0.5, 1.0]),
}


@pytest.mark.parametrize("kind", list(BAD_STATES))
def test_bad_joint_state_is_reported_and_survived(loop, kind):
    planner, probe, state_pub = loop
    before = planner.health.counts.get("joint_state", 0)
    kept = planner._state
    state_pub.publish(BAD_STATES[kind](3000.0))
    wait_for(lambda: planner.health.counts.get("joint_state", 0) > before, what=f"the {kind} state to be counted")
    assert planner._state is kept  # the last good state stays
    wait_for(lambda: "bad_joint_state" in probe.diagnostic(": input")[1], what="the input diagnostic")


def test_stale_state_is_refused(loop):
    planner, probe, state_pub = loop
    stamp = 4000.0
    state_pub.publish(joint_state(stamp - 1.0, [0.0, 0.0, 0.5, 1.0]))  # a second older than the frame
    wait_for(lambda: planner._state is not None and planner._state[0] == pytest.approx(stamp - 1.0), what="the state")
    before, done = planner.health.counts.get("no_state", 0), planner.worker.plans_done
    probe.send_frame(scene(2), stamp)
    wait_for(lambda: planner.health.counts.get("no_state", 0) > before, what="the stale state to be reported")
    assert planner.worker.plans_done == done
    state_pub.publish(joint_state(stamp, [0.0, 0.0, 0.5, 1.0]))
    wait_for(lambda: planner._state[0] == pytest.approx(stamp), what="the fresh state")
    probe.send_frame(scene(2), stamp + 0.05)
    wait_for(lambda: planner.worker.plans_done > done, what="a plan once the state is fresh")
    _, values = probe.diagnostic(": planning")
    assert values.get("reads_joint_states") == "True"
