"""The ``sim_camera`` node: the vans_sim desk as a stand-in robot with a camera.

    vans-ros-sim-camera --ros-args -p task:=push_red -r action_plan:=/planner/action_plan -r cmd:=/planner/cmd

Every control period (wall time, ``step_rate_hz``) it steps the simulator with the next queued
action of the newest ``action_plan`` (``execute_actions`` of them), or else with the newest ``cmd``
twist if it is younger than ``cmd_timeout_s``, or else holds still, and publishes the frame.

A plan is stamped with the frame it was planned on and arrives some steps later; as a trajectory
controller does, the node starts it at the action due now (``skip_late_actions``), not at its first:
the steps run while the planner was busy already moved the tool past the first ones.

- out: ``camera/image_raw`` (rgb8, sensor-data QoS), ``joint_states`` (``sensor_msgs/JointState``:
  ``ee_x``, ``ee_y``, ``ee_z`` in metres and ``gripper`` opening 0-1, published just before each frame
  with the same stamp), ``instruction`` (the task's, transient local),
  ``~/event`` (caption of the event in progress, when it changes), ``~/success`` (``std_msgs/Bool``
  at each episode's end) and ``~/episode`` (JSON: episode, seed, success, steps, task, and the plans
  received with the mean steps each arrived after its frame, ``plans`` and ``plan_late_steps``);
- in: ``action_plan`` (``trajectory_msgs/MultiDOFJointTrajectory``), ``cmd`` (``geometry_msgs/TwistStamped``).
"""

from __future__ import annotations

import json
import threading
import time

import gymnasium as gym
import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Header, String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from vans_ros import plan_messages
from vans_ros.entry import spin_node
from vans_ros.parameters import ParameterError, ParameterSpec, declare_and_check, non_negative, positive
from vans_ros.planner_node import LATCHED, RELIABLE_10

# The joint_states entries: the desk's tool point slides and its gripper opening, in the order the
# planner's IDM reads them (the planner node's default state_joints).
SIM_JOINTS = ("ee_x", "ee_y", "ee_z", "gripper")

PARAMETERS = [
    ParameterSpec("task", "push_red", "vans_sim task (vans-sim tasks lists them)", check=bool, rule="a task name"),
    ParameterSpec("split", "heldout", "initial-state split", choices=("train", "heldout")),
    ParameterSpec("image_size", 64, "side of each rendered camera view", choices=(64, 128, 256)),
    ParameterSpec("cameras", "desk", "camera views in each image, side by side, comma-separated: 'desk', or "
                  "'desk,side' for a planner whose VDM and IDM draw and read both (as vans-sim --cameras)",
                  check=lambda v: bool(v.strip()), rule="comma-separated camera names"),
    ParameterSpec("shadows", False, "the sun casts shadows onto the desk; as the planner's training data had it"),
    ParameterSpec("step_rate_hz", 20.0, "simulator steps (and frames) per wall-clock second; 20 = real time",
                  check=lambda v: 0 < v <= 1000, rule="in (0, 1000]"),
    ParameterSpec("seed", 0, "seed of the first episode; later episodes count up", check=non_negative, rule=">= 0"),
    ParameterSpec("episodes", 0, "episodes to run, then stop stepping; 0 = forever", check=non_negative,
                  rule=">= 0"),
    ParameterSpec("max_episode_steps", 0, "steps before an episode is cut; 0 = the task's own",
                  check=non_negative, rule=">= 0"),
    ParameterSpec("execute_actions", 4, "actions of each received plan that are executed before holding still",
                  check=positive, rule=">= 1"),
    ParameterSpec("skip_late_actions", True, "start each plan at the action due now: skip one action per step run "
                  "since the frame the plan is stamped with; false = from its first action, however late"),
    ParameterSpec("cmd_timeout_s", 0.5, "a cmd twist older than this is not executed", check=positive, rule="> 0"),
    ParameterSpec("max_step_m", 0.02, "metres per unit action per step: the inverse of the planner's scaling",
                  check=positive, rule="> 0"),
    ParameterSpec("frame_id", "desk_camera", "frame_id of the camera images", check=bool, rule="non-empty"),
]


class SimCameraNode(Node):
    PARAMETERS = PARAMETERS

    def __init__(self, **kwargs):
        super().__init__("sim_camera", **kwargs)
        import vans_sim  # noqa: F401  (registers vans_sim/RoboDesk-v0)
        from vans_sim.scene import CONTROL_PERIOD, check_cameras
        from vans_sim.env import proprioception
        from vans_sim.tasks import get_task

        self.params = p = declare_and_check(self, PARAMETERS)
        try:
            self.task = get_task(p["task"])
        except (KeyError, ValueError) as e:
            raise ParameterError(f"parameter 'task': {e}") from e
        try:
            self.cameras = check_cameras(name.strip() for name in p["cameras"].split(","))
        except ValueError as e:
            raise ParameterError(f"parameter 'cameras': {e}") from e
        self.period_s = CONTROL_PERIOD
        self.proprioception = proprioception
        self.env = gym.make("vans_sim/RoboDesk-v0", task=p["task"], image_size=p["image_size"], split=p["split"],
                            shadows=p["shadows"], cameras=self.cameras,
                            max_episode_steps=p["max_episode_steps"] or None)
        self._lock = threading.Lock()  # the queued actions and the newest cmd
        self._queued = np.zeros((0, 4), np.float32)
        self._cmd: tuple[float, TwistStamped] | None = None
        self._gripper = -1.0  # open, as every episode starts
        self._episode_start_s = 0.0
        self._frame_steps: dict[tuple[int, int], int] = {}  # this episode's frame stamps -> steps run by then
        self._plan_late_steps: list[int] = []  # this episode's plans: steps run between frame and arrival
        self.episode, self.results, self.steps = 0, [], 0
        self.done = False

        self.pub_image = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.pub_joint_state = self.create_publisher(JointState, "joint_states", RELIABLE_10)
        self.pub_instruction = self.create_publisher(String, "instruction", LATCHED)
        self.pub_event = self.create_publisher(String, "~/event", RELIABLE_10)
        self.pub_success = self.create_publisher(Bool, "~/success", RELIABLE_10)
        self.pub_episode = self.create_publisher(String, "~/episode", RELIABLE_10)
        self.create_subscription(MultiDOFJointTrajectory, "action_plan", self._on_plan, RELIABLE_10)
        self.create_subscription(TwistStamped, "cmd", self._on_cmd, RELIABLE_10)
        self.pub_instruction.publish(String(data=self.task.instruction))
        # The first reset happens in the first tick: MuJoCo's GL context belongs to the thread that
        # renders first, and every render must happen on the executor's thread (spin it single-threaded).
        self._started = False
        self.create_timer(1.0 / p["step_rate_hz"], self._step)
        self.get_logger().info(f"task {self.task.name!r} ({self.task.instruction!r}), {p['split']} split, "
                               f"{p['image_size']}px views of {', '.join(self.cameras)} at {p['step_rate_hz']} Hz")

    def _on_plan(self, msg: MultiDOFJointTrajectory) -> None:
        try:
            actions = plan_messages.trajectory_to_actions(msg, self.period_s, self.params["max_step_m"])
        except ValueError as e:
            self.get_logger().error(f"action_plan ignored: {e}", throttle_duration_sec=5.0)
            return
        with self._lock:
            if plan_messages.time_to_seconds(msg.header.stamp) < self._episode_start_s:
                return  # planned on a frame of the previous episode
            late = self._steps_since(msg.header.stamp)
            self._plan_late_steps.append(late)
            if not self.params["skip_late_actions"]:
                late = 0
            if late >= len(actions):
                self.get_logger().warn(f"action_plan ignored: its {len(actions)} actions were all due before now "
                                       f"(planned {late} steps ago)", throttle_duration_sec=5.0)
                return
            self._queued = actions[late:late + self.params["execute_actions"]]

    def _steps_since(self, stamp) -> int:
        """Steps run since the frame stamped ``stamp``: counted for this episode's frames, else (a stamp
        this node never published) estimated from the wall time and ``step_rate_hz``."""
        planned_at = self._frame_steps.get((stamp.sec, stamp.nanosec))
        if planned_at is not None:
            return self.steps - planned_at
        elapsed_s = self.get_clock().now().nanoseconds * 1e-9 - plan_messages.time_to_seconds(stamp)
        return max(0, int(elapsed_s * self.params["step_rate_hz"]))

    def _on_cmd(self, msg: TwistStamped) -> None:
        with self._lock:
            self._cmd = (time.monotonic(), msg)

    def _next_action(self) -> np.ndarray:
        with self._lock:
            if len(self._queued):
                action, self._queued = self._queued[0], self._queued[1:]
                self._gripper = float(action[3])
                return action
            if self._cmd is not None and time.monotonic() - self._cmd[0] <= self.params["cmd_timeout_s"]:
                return plan_messages.twist_to_action(self._cmd[1], self._gripper, self.period_s,
                                                     self.params["max_step_m"])
        return np.array([0.0, 0.0, 0.0, self._gripper], np.float32)

    def _reset(self) -> None:
        self.seed = self.params["seed"] + self.episode
        obs, info = self.env.reset(seed=self.seed)
        with self._lock:
            self._queued, self._cmd, self._gripper = np.zeros((0, 4), np.float32), None, -1.0
            self._episode_start_s = self.get_clock().now().nanoseconds * 1e-9
            self._frame_steps.clear()
            self._plan_late_steps = []
            self.steps = 0
        self.caption = None
        self._publish(obs, info)

    def _publish(self, obs, info) -> None:
        self.ee_pos = obs["ee_pos"]
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.params["frame_id"])
        with self._lock:
            self._frame_steps[(header.stamp.sec, header.stamp.nanosec)] = self.steps
        # Before the frame: a planner that plans on a frame's arrival finds the state of that frame.
        self.pub_joint_state.publish(JointState(
            header=header, name=list(SIM_JOINTS),
            position=self.proprioception(obs).tolist()))
        self.pub_image.publish(plan_messages.rgb_to_image(obs["image"], header))
        if info["caption"] != self.caption:
            self.caption = info["caption"]
            self.pub_event.publish(String(data=self.caption))

    def _step(self) -> None:
        if self.done:
            return
        if not self._started:
            self._started = True
            self._reset()
            return
        obs, _, terminated, truncated, info = self.env.step(self._next_action())
        with self._lock:
            self.steps += 1
        self._publish(obs, info)
        if terminated or truncated:
            result = {"episode": self.episode, "seed": self.seed, "task": self.task.name,
                      "success": bool(info["success"]), "steps": self.steps, "plans": len(self._plan_late_steps),
                      "plan_late_steps": round(float(np.mean(self._plan_late_steps)), 2) if self._plan_late_steps
                      else None}
            self.results.append(result)
            self.pub_success.publish(Bool(data=result["success"]))
            self.pub_episode.publish(String(data=json.dumps(result)))
            self.get_logger().info(f"episode {self.episode} (seed {self.seed}): "
                                   f"{'success' if result['success'] else 'failure'} in {self.steps} steps")
            self.episode += 1
            if self.params["episodes"] and self.episode >= self.params["episodes"]:
                self.done = True
                return
            self._reset()

    def close(self) -> None:
        self.done = True  # a timer tick already queued must not step or render a closed simulator
        self.env.close()


def main(args=None):
    raise SystemExit(spin_node(SimCameraNode, "vans-ros-sim-camera", args))


if __name__ == "__main__":
    main()
