"""The sim camera as a stand-in robot (frames out, plans and twists executed, episodes reported),
the demo's closed loop through its console entry point, and which checkpoint the nodes pick."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Header, String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from conftest import wait_for
from ros_probe import LATCHED, RELIABLE
from vans_ros import checkpoints
from vans_ros.parameters import ParameterError
from vans_ros.plan_messages import action_to_twist, actions_to_trajectory
from vans_ros.sim_camera_node import SimCameraNode

PACKAGE = Path(__file__).resolve().parents[2] / "ros2_ws/src/vans_ros"


class Robot(Node):
    """Plays the planner's part against the sim camera."""

    def __init__(self):
        super().__init__("robot_probe")
        self.frames, self.episodes, self.successes, self.instructions = [], [], [], []
        self.plan_pub = self.create_publisher(MultiDOFJointTrajectory, "action_plan", RELIABLE)
        self.cmd_pub = self.create_publisher(TwistStamped, "cmd", RELIABLE)
        self.create_subscription(Image, "camera/image_raw", self.frames.append, qos_profile_sensor_data)
        self.joint_states = []
        self.create_subscription(JointState, "joint_states", self.joint_states.append, RELIABLE)
        self.create_subscription(String, "/sim_camera/episode", lambda m: self.episodes.append(json.loads(m.data)),
                                 RELIABLE)
        self.create_subscription(Bool, "/sim_camera/success", lambda m: self.successes.append(m.data), RELIABLE)

    def join_late(self):
        self.create_subscription(String, "instruction", lambda m: self.instructions.append(m.data), LATCHED)


def test_sim_camera_executes_plans_and_twists_and_reports_episodes(spinner):
    sim = spinner.add(SimCameraNode(parameter_overrides=[
        # 3 s episodes: long enough that a loaded machine cannot end one between the frame a plan is
        # stamped with and the plan's arrival (a plan from an earlier episode is rightly ignored)
        Parameter("step_rate_hz", value=100.0), Parameter("max_episode_steps", value=300),
        Parameter("episodes", value=2), Parameter("execute_actions", value=4)]))
    robot = spinner.add(Robot())
    wait_for(lambda: len(robot.frames) >= 3, what="camera frames")
    frame = robot.frames[-1]
    assert (frame.encoding, frame.height, frame.width, frame.header.frame_id) == ("rgb8", 64, 64, "desk_camera")

    robot.join_late()  # transient local: the instruction published at start-up still arrives
    wait_for(lambda: robot.instructions, what="the latched instruction")
    assert robot.instructions == ["push the red button"]

    # the proprioception a planner reads, stamped as the frame it goes with
    wait_for(lambda: robot.joint_states, what="joint states")
    state = robot.joint_states[-1]
    assert list(state.name) == ["ee_x", "ee_y", "ee_z", "gripper"] and len(state.position) == 4
    stamps = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in robot.frames}
    assert (state.header.stamp.sec, state.header.stamp.nanosec) in stamps
    assert 0.0 <= state.position[3] <= 1.0

    start = sim.ee_pos.copy()
    # long enough that the steps run before it arrives (skipped as late) leave more than execute_actions
    plan = np.tile(np.array([[1.0, 0.0, 0.0, -1.0]], np.float32), (40, 1))
    robot.plan_pub.publish(actions_to_trajectory(-plan, Header(), 0.05, 0.02))  # stamped before the episode
    time.sleep(0.3)
    assert abs(sim.ee_pos[0] - start[0]) < 0.005  # ... so not executed
    # a planner stamps its plan with the camera frame it planned on
    robot.plan_pub.publish(actions_to_trajectory(plan, Header(stamp=robot.frames[-1].header.stamp), 0.05, 0.02))
    wait_for(lambda: sim.ee_pos[0] - start[0] > 0.05, timeout=10, what="the tool to move +x with the plan")
    moved = sim.ee_pos[0] - start[0]
    assert moved < 4 * 0.02 + 0.01  # only execute_actions=4 of the 40 actions were run

    start = sim.ee_pos.copy()
    for _ in range(40):  # a servo streams twists; each is executed for at most cmd_timeout_s
        robot.cmd_pub.publish(action_to_twist(np.array([0.0, -1.0, 0.0, 0.0]), Header(), 0.05, 0.02))
        time.sleep(0.05)
        if start[1] - sim.ee_pos[1] > 0.03:
            break
    assert start[1] - sim.ee_pos[1] > 0.03

    wait_for(lambda: sim.done and len(robot.episodes) == 2, timeout=30, what="two episodes")
    assert [e["episode"] for e in robot.episodes] == [0, 1] and [e["seed"] for e in robot.episodes] == [0, 1]
    assert all(e["task"] == "push_red" and e["steps"] <= 300 for e in robot.episodes)
    assert robot.successes == [e["success"] for e in robot.episodes]


def test_sim_camera_starts_a_late_plan_at_the_action_due_now(ros):
    """A plan stamped with the frame of step 2 that arrives after step 5 starts at its action 3: the
    tool has already run three steps past that frame. Stepped by hand, so the count is exact."""
    sim = SimCameraNode(parameter_overrides=[Parameter("execute_actions", value=3)])
    later = SimCameraNode(parameter_overrides=[Parameter("execute_actions", value=3),
                                               Parameter("skip_late_actions", value=False)])
    try:
        plan = np.stack([np.linspace(-0.7, 0.7, 8), np.zeros(8), np.zeros(8), -np.ones(8)], axis=1).astype(np.float32)
        stamps = {sim: [], later: []}
        for node in (sim, later):
            node.pub_image.publish = lambda msg, node=node: stamps[node].append(msg.header.stamp)
            for _ in range(6):  # the reset's frame, then five steps' frames
                node._step()
            node._on_plan(actions_to_trajectory(plan, Header(stamp=stamps[node][2]), 0.05, 0.02))
        np.testing.assert_allclose(sim._queued, plan[3:6], atol=1e-6)
        np.testing.assert_allclose(later._queued, plan[:3], atol=1e-6)  # skip_late_actions false: from the first
        assert sim._plan_late_steps == later._plan_late_steps == [3]  # counted for the episode's report either way

        # a plan whose actions were all due before now is dropped, and the queue kept
        stale = actions_to_trajectory(plan[:2], Header(stamp=stamps[sim][0]), 0.05, 0.02)
        sim._on_plan(stale)
        np.testing.assert_allclose(sim._queued, plan[3:6], atol=1e-6)
        assert sim._next_action()[0] == pytest.approx(plan[3, 0], abs=1e-6)
        assert sim._plan_late_steps == [3, 5]
    finally:
        for node in (sim, later):
            node.close()
            node.destroy_node()


def test_sim_camera_renders_the_cameras_asked_for(spinner):
    """cameras:=desk,side publishes both views side by side; an unknown camera stops the node, named."""
    spinner.add(SimCameraNode(parameter_overrides=[Parameter("cameras", value="desk, side"),
                                                   Parameter("step_rate_hz", value=100.0)]))
    robot = spinner.add(Robot())
    wait_for(lambda: robot.frames, what="camera frames")
    assert (robot.frames[-1].height, robot.frames[-1].width) == (64, 128)
    with pytest.raises(ParameterError, match=r"parameter 'cameras': cameras must be distinct names from"):
        SimCameraNode(parameter_overrides=[Parameter("cameras", value="desk,top")])


@pytest.mark.parametrize("model", ["tiny_model", "tiny_state_model", "tiny_two_camera_model"])
def test_demo_closed_loop_writes_report_and_gif(model, request, tmp_path):
    """The demo with a checkpoint whose IDM reads the sim camera's joint states, one without, and one
    that draws and reads two camera views (the demo's simulator renders the checkpoint's cameras)."""
    out = tmp_path / "demo"
    result = subprocess.run([Path(sys.executable).parent / "vans-ros-demo", "--episodes", "2", "--max-steps", "20",
                             "--model", str(request.getfixturevalue(model)), "--out", str(out),
                             "--ros-args", "--params-file", str(PACKAGE / "config" / "planner.yaml")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["completed"] and len(report["episodes"]) == 2
    assert all(e["plans"] > 0 and e["plan_late_steps"] >= 0 for e in report["episodes"])
    assert report["plans"] > 0 and report["plan_latency_ms"]["p50"] > 0
    assert report["trained"] is False
    assert "UNTRAINED" in (out / "report.md").read_text()
    assert report["gif_frames"] >= 30  # one per camera frame (the GIF writer merges identical ones)
    from PIL import Image as PILImage
    width = 128 if model == "tiny_two_camera_model" else 64  # the views side by side
    with PILImage.open(out / "camera_vs_foreseen.gif") as gif:
        assert gif.size == (2 * (width + 2 + width), 128)


def test_model_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoints, "_REPO_ROOT", tmp_path / "elsewhere")
    assert checkpoints.resolve_model_dir("some/dir") == (Path("some/dir"), False)
    try:
        checkpoints.resolve_model_dir("")
        raise AssertionError("an empty model_dir without a shipped model must fail")
    except FileNotFoundError as e:
        assert "model_dir" in str(e)
    shipped = tmp_path / "models" / "vans-desk-64"
    shipped.mkdir(parents=True)
    (shipped / "model_index.json").write_text("{}")
    resolved = checkpoints.resolve_model_dir("", fallback_dir=tmp_path / "tiny")
    assert resolved == (tmp_path / checkpoints.SHIPPED_MODEL, False)
