"""The planner node over real rclpy + Fast DDS: frames in, caption, foreseen frames, action plan,
command and diagnostics out; bad input of every kind is logged, counted and survived."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from conftest import Spinner, wait_for
from ros_probe import Probe, scene
from vans_ros.plan_messages import seconds_to_time, time_to_seconds, trajectory_to_actions
from vans_ros.planner_node import PlannerNode

PERIOD = 0.05
K = 8


@pytest.fixture(scope="module")
def loop(ros, tiny_model):
    """One planner (planning on every new frame) and one probe for the module."""
    spinner = Spinner()
    planner = spinner.add(PlannerNode(parameter_overrides=[
        Parameter("model_dir", value=str(tiny_model)), Parameter("plan_period_s", value=0.0),
        Parameter("subscribe_compressed", value=True), Parameter("diagnostics_period_s", value=0.2),
        # deep enough for the whole burst of 200: the test is about the node's own queue of one, not
        # the middleware's (the default depth of 5 drops most of a burst before the node sees it)
        Parameter("camera_qos_depth", value=256)]))
    probe = spinner.add(Probe())
    probe.instruction_pub.publish(String(data="push the red button"))
    wait_for(lambda: planner.instruction == "push the red button", what="the instruction")
    yield planner, probe
    spinner.close()


class Clock:
    """Camera stamps at the control period."""
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        self.t += PERIOD
        return self.t


@pytest.fixture(scope="module")
def clock():
    return Clock()


def plan_on_good_frame(planner, probe, clock, seed=0, size=(64, 64)):
    """Send one good frame; wait for the plan made from it; return its stamp."""
    done = planner.worker.plans_done
    stamp = clock()
    probe.send_frame(scene(seed, *size), stamp)
    wait_for(lambda: planner.worker.plans_done > done and probe.count("action_plan")
             and time_to_seconds(probe.latest("action_plan").header.stamp) >= stamp - 1e-6, what="a plan")
    return stamp


def test_frames_in_plan_out(loop, clock):
    planner, probe = loop
    probe.clear()
    stamp = plan_on_good_frame(planner, probe, clock)
    wait_for(lambda: probe.count("foreseen") >= K and probe.count("cmd") and probe.count("strip")
             and probe.count("next_event"), what="every output")

    assert isinstance(probe.latest("next_event").data, str)  # the untrained tiny VLM may write an empty one
    foreseen = [m for m in probe.received["foreseen"]
                if time_to_seconds(m.header.stamp) > stamp][:K]
    assert len(foreseen) == K
    stamps = [time_to_seconds(m.header.stamp) for m in foreseen]
    np.testing.assert_allclose(np.diff([stamp] + stamps), PERIOD, atol=1e-6)  # future, at the control period
    assert all(m.header.frame_id == "test_camera" and (m.height, m.width, m.encoding) == (64, 64, "rgb8")
               for m in foreseen)
    strip = probe.latest("strip")
    assert strip.height == 64 and strip.width == 64 * (4 + K) + 2

    plan = probe.latest("action_plan")
    assert time_to_seconds(plan.header.stamp) == pytest.approx(stamp, abs=1e-6)
    assert len(plan.points) == K and list(plan.joint_names) == ["tool", "gripper"]
    assert [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in plan.points] == pytest.approx(
        [(k + 1) * PERIOD for k in range(K)])
    actions = trajectory_to_actions(plan, PERIOD, 0.02)
    assert actions.shape == (K, 4) and np.all(np.abs(actions) <= 1)
    cmd = probe.latest("cmd")
    assert cmd.twist.linear.x == pytest.approx(actions[0, 0] * 0.02 / PERIOD, abs=1e-5)

    wait_for(lambda: probe.diagnostic(": planning")[1].get("plan_latency_p50_ms", "n/a") != "n/a",
             what="latency diagnostics")
    status, values = probe.diagnostic(": planning")
    assert status.level == status.OK
    for key in ("plan_latency_p50_ms", "plan_latency_p95_ms", "input_rate_hz", "dropped_frames", "backend"):
        assert key in values
    assert values["backend"] == "onnxruntime"
    assert float(values["plan_latency_p95_ms"]) >= float(values["plan_latency_p50_ms"]) > 0


def test_plan_once_service(loop, clock):
    planner, probe = loop
    plan_on_good_frame(planner, probe, clock)
    client = probe.create_client(Trigger, "/planner/plan_once")
    assert client.wait_for_service(timeout_sec=10)
    done = planner.worker.plans_done
    future = client.call_async(Trigger.Request())
    wait_for(future.done, what="the plan_once response")
    assert future.result().success, future.result().message
    wait_for(lambda: planner.worker.plans_done > done, what="the requested plan")
    probe.destroy_client(client)


def test_compressed_frames(loop, clock):
    planner, probe = loop
    for fmt in ("jpeg", "png"):
        buffer = io.BytesIO()
        PILImage.fromarray(scene(3, 120, 160)).save(buffer, format=fmt.upper())
        done = planner.worker.plans_done
        probe.compressed_pub.publish(CompressedImage(header=Header(stamp=seconds_to_time(clock()), frame_id="c"),
                                                     format=fmt, data=buffer.getvalue()))
        wait_for(lambda: planner.worker.plans_done > done, what=f"a plan from a {fmt} frame")
    plan_on_good_frame(planner, probe, clock)  # back to 64x64 raw frames


def image(encoding="rgb8", width=64, height=64, step=None, data=None, stamp=0.0):
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding, 3)
    step = width * channels if step is None else step
    data = bytes(step * height) if data is None else data
    return Image(header=Header(stamp=seconds_to_time(stamp), frame_id="test_camera"), height=height, width=width,
                 encoding=encoding, step=step, data=data)


BAD_FRAMES = {
    "encoding": lambda: image(encoding="yuv422"),
    "zero_size": lambda: image(width=0, height=0, data=b""),
    "step": lambda: image(step=10),
    "data_length": lambda: image(data=bytes(100)),
    "too_large": lambda: image(width=3840, height=2160),  # 4K
}


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
def test_bad_frame_is_reported_and_survived(loop, clock, kind, caplog):
    planner, probe = loop
    before = planner.health.counts.get(kind, 0)
    msg = BAD_FRAMES[kind]()
    msg.header.stamp = seconds_to_time(clock())
    probe.image_pub_reliable.publish(msg)
    wait_for(lambda: planner.health.counts.get(kind, 0) > before, what=f"the {kind} error to be counted")
    wait_for(lambda: f"bad_{kind}" in probe.diagnostic(": input")[1], what="the input diagnostic")
    status, values = probe.diagnostic(": input")
    assert int(values[f"bad_{kind}"]) > before
    # every bad message is an ERROR in the diagnostics period it arrived in
    assert any(s.level == s.ERROR and kind in s.message for a in probe.received["diagnostics"] for s in a.status)
    plan_on_good_frame(planner, probe, clock)  # still up, and planning again


def test_resolution_change_restarts_context(loop, clock):
    planner, probe = loop
    before = planner.health.counts.get("resolution_change", 0)
    plan_on_good_frame(planner, probe, clock, size=(64, 64))
    plan_on_good_frame(planner, probe, clock, seed=1, size=(480, 640))
    assert planner.health.counts.get("resolution_change", 0) == before + 1
    assert len(planner.context_buffer) == 1  # the new camera set-up starts a new context
    wait_for(lambda: any(s.level == s.WARN and "resolution" in s.message
                         for a in probe.received["diagnostics"] for s in a.status), what="the WARN diagnostic")
    plan_on_good_frame(planner, probe, clock, seed=2, size=(64, 64))


def test_empty_instruction_is_ignored(loop, clock):
    planner, probe = loop
    before = planner.health.counts.get("empty_instruction", 0)
    probe.instruction_pub.publish(String(data="   "))
    wait_for(lambda: planner.health.counts.get("empty_instruction", 0) > before, what="the empty instruction")
    assert planner.instruction == "push the red button"
    wait_for(lambda: "bad_empty_instruction" in probe.diagnostic(": input")[1], what="the input diagnostic")
    plan_on_good_frame(planner, probe, clock)


def test_burst_of_200_frames(loop, clock):
    planner, probe = loop
    received, done = planner.frames_received, planner.worker.plans_done
    dropped = planner.worker.requests_dropped
    for i in range(200):
        probe.send_frame(scene(i % 7), clock())
    wait_for(lambda: planner.frames_received >= received + 200, what="200 frames")
    wait_for(planner.worker.idle, what="the planner to finish")
    # newest frames win: far fewer plans than frames, the superseded requests are counted
    assert planner.worker.plans_done - done < 50
    assert planner.worker.requests_dropped - dropped > 150
    assert planner.health.counts.get("burst", 0) >= 1
    wait_for(lambda: int(probe.diagnostic(": planning")[1].get("dropped_frames", 0)) > 150,
             what="dropped frames in the diagnostics")
    plan_on_good_frame(planner, probe, clock)
