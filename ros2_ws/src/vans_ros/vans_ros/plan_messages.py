"""``Plan`` -> ROS messages, and back for the actions (the sim camera executes them).

The layout of ``~/action_plan`` (``trajectory_msgs/MultiDOFJointTrajectory``):

- ``header.stamp``: the stamp of the newest camera frame the plan was made from (the plan's "now");
  ``header.frame_id``: the frame the tool displacements are expressed in (``action_frame_id``).
- ``joint_names``: ``["tool", "gripper"]``.
- ``points[k]`` for ``k = 0 .. K-1``, one per predicted frame: the engine's ``Plan.actions[k]`` is the
  action that leads from frame ``k`` to predicted frame ``k + 1`` (frame 0 is the current camera
  frame), so the K predicted frames give K actions, all published.

  - ``time_from_start`` = ``(k + 1) * control_period_s``: when predicted frame ``k + 1`` is reached.
  - ``transforms[0].translation``: tool point displacement from the plan's start, metres
    (cumulative sum of ``actions[:k + 1, :3] * max_step_m``); identity rotation.
  - ``velocities[0].linear``: tool velocity over step k, m/s (``actions[k, :3] * max_step_m / period``).
  - ``transforms[1].translation.x``: gripper command in [-1, 1] (+1 closes, -1 opens).

``~/cmd`` (``geometry_msgs/TwistStamped``) carries the first action's velocity only: a Cartesian
servo has no gripper field, the gripper rides on ``~/action_plan``.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Transform, Twist, TwistStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from trajectory_msgs.msg import MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint

JOINT_NAMES = ["tool", "gripper"]


def seconds_to_time(seconds: float) -> Time:
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def time_to_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """An ``(H, W, 3)`` uint8 array as an rgb8 ``sensor_msgs/Image``."""
    height, width = rgb.shape[:2]
    return Image(header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                 data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def foreseen_images(frames: np.ndarray, stamp_s: float, period_s: float, frame_id: str) -> list[Image]:
    """One Image per predicted frame, stamped ``stamp_s + (k + 1) * period_s``: the moment it foresees."""
    return [rgb_to_image(frame, Header(stamp=seconds_to_time(stamp_s + (k + 1) * period_s), frame_id=frame_id))
            for k, frame in enumerate(frames)]


def strip_mosaic(context: np.ndarray, foreseen: np.ndarray, gap: int = 2) -> np.ndarray:
    """One row: the context frames, a white gap, the foreseen frames; ``(H, W * (T + K) + gap, 3)`` uint8."""
    height = context.shape[1]
    separator = np.full((height, gap, 3), 255, np.uint8)
    return np.concatenate([*context, separator, *foreseen], axis=1)


def actions_to_trajectory(actions: np.ndarray, header: Header, period_s: float,
                          max_step_m: float) -> MultiDOFJointTrajectory:
    """``(K, 4)`` actions in [-1, 1] -> ``MultiDOFJointTrajectory`` in the layout of the module docstring."""
    actions = np.asarray(actions, dtype=np.float64)
    displacement = np.cumsum(actions[:, :3] * max_step_m, axis=0)
    velocity = actions[:, :3] * max_step_m / period_s
    points = []
    for k, action in enumerate(actions):
        tool = Transform()
        tool.translation.x, tool.translation.y, tool.translation.z = displacement[k].tolist()
        gripper = Transform()
        gripper.translation.x = float(action[3])
        tool_velocity = Twist()
        tool_velocity.linear.x, tool_velocity.linear.y, tool_velocity.linear.z = velocity[k].tolist()
        nanoseconds = int(round((k + 1) * period_s * 1e9))
        points.append(MultiDOFJointTrajectoryPoint(
            transforms=[tool, gripper], velocities=[tool_velocity, Twist()],
            time_from_start=Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)))
    return MultiDOFJointTrajectory(header=header, joint_names=list(JOINT_NAMES), points=points)


def trajectory_to_actions(msg: MultiDOFJointTrajectory, period_s: float, max_step_m: float) -> np.ndarray:
    """The inverse of :func:`actions_to_trajectory`: ``(K, 4)`` float32 actions, clipped to [-1, 1]."""
    if list(msg.joint_names) != JOINT_NAMES:
        raise ValueError(f"joint_names must be {JOINT_NAMES}, got {list(msg.joint_names)}")
    rows = []
    for point in msg.points:
        if len(point.velocities) < 1 or len(point.transforms) < 2:
            raise ValueError("each point needs the tool velocity and the gripper transform")
        v = point.velocities[0].linear
        rows.append([v.x * period_s / max_step_m, v.y * period_s / max_step_m, v.z * period_s / max_step_m,
                     point.transforms[1].translation.x])
    return np.clip(np.asarray(rows, dtype=np.float32).reshape(-1, 4), -1.0, 1.0)


def action_to_twist(action: np.ndarray, header: Header, period_s: float, max_step_m: float) -> TwistStamped:
    """The first action as a tool velocity (m/s) for a Cartesian servo controller."""
    twist = TwistStamped(header=header)
    twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = (
        np.asarray(action[:3], dtype=np.float64) * max_step_m / period_s).tolist()
    return twist


def twist_to_action(msg: TwistStamped, gripper: float, period_s: float, max_step_m: float) -> np.ndarray:
    """A tool velocity back to one action, with the gripper command given separately."""
    linear = msg.twist.linear
    action = [linear.x * period_s / max_step_m, linear.y * period_s / max_step_m, linear.z * period_s / max_step_m,
              gripper]
    return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
