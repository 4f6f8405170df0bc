"""A test node that talks to the planner over real topics: publishes camera frames and instructions,
keeps everything the planner publishes."""

from __future__ import annotations

import threading

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from vans_ros.plan_messages import rgb_to_image, seconds_to_time

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def scene(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class Probe(Node):
    def __init__(self, planner: str = "/planner"):
        super().__init__("probe")
        self.lock = threading.Lock()
        self.received: dict[str, list] = {k: [] for k in
                                          ("next_event", "foreseen", "strip", "action_plan", "cmd", "diagnostics")}
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        # The camera side may be reliable: a reliable publisher matches a sensor-data subscriber, and
        # the tests must not lose frames to a best-effort queue.
        self.image_pub_reliable = self.create_publisher(Image, "camera/image_raw", RELIABLE)
        self.compressed_pub = self.create_publisher(CompressedImage, "camera/image_raw/compressed", RELIABLE)
        self.instruction_pub = self.create_publisher(String, "instruction", LATCHED)
        for key, kind, topic in (("next_event", String, "next_event"), ("foreseen", Image, "foreseen/image"),
                                 ("strip", Image, "foreseen/strip"),
                                 ("action_plan", MultiDOFJointTrajectory, "action_plan"),
                                 ("cmd", TwistStamped, "cmd")):
            self.create_subscription(kind, f"{planner}/{topic}", self._keeper(key), RELIABLE)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._keeper("diagnostics"), RELIABLE)

    def _keeper(self, key):
        def keep(msg):
            with self.lock:
                self.received[key].append(msg)
        return keep

    def count(self, key: str) -> int:
        with self.lock:
            return len(self.received[key])

    def latest(self, key: str):
        with self.lock:
            return self.received[key][-1] if self.received[key] else None

    def clear(self) -> None:
        with self.lock:
            for v in self.received.values():
                v.clear()

    def send_frame(self, rgb: np.ndarray, stamp_s: float, frame_id: str = "test_camera", reliable: bool = True):
        msg = rgb_to_image(rgb, Header(stamp=seconds_to_time(stamp_s), frame_id=frame_id))
        (self.image_pub_reliable if reliable else self.image_pub).publish(msg)

    def diagnostic(self, suffix: str):
        """The newest DiagnosticStatus whose name ends with ``suffix``, as (status, values dict)."""
        with self.lock:
            for array in reversed(self.received["diagnostics"]):
                for status in array.status:
                    if status.name.endswith(suffix):
                        return status, {kv.key: kv.value for kv in status.values}
        return None, {}
