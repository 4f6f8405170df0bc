"""Benchmark the planner node: its overhead on top of ``Planner.plan``, and a soak run at camera rate.

    .venv/bin/python ros2_ws/src/vans_ros/benchmarks/bench_node.py --out benchmarks/results/ros_node_cpu.json
    .venv/bin/python ros2_ws/src/vans_ros/benchmarks/bench_node.py --soak-minutes 10 \
        --out benchmarks/results/ros_soak_cpu.json

Overhead: a bench node publishes a 64x64 camera frame; the planner node (planning on every new frame)
decodes it, plans and publishes caption, 8 foreseen frames, the strip, the action plan and the command;
the time from publishing the frame to receiving the command is one end-to-end plan. Overhead per plan
= end to end - the time of the ``Planner.plan`` call inside that plan (the node times it): transport
both ways, decoding, the hand-over to the planning thread, encoding and publishing. In the same run,
interleaved, ``Planner.plan`` is also called directly on the same context with the same seed, for
reference.

Soak: a 640x480 bgr8 camera at ``--rate-hz`` for ``--soak-minutes`` with the default plan period
(0.2 s); the process's RSS is sampled every 10 s after a one-minute warm-up.

The model is the shipped ``models/vans-desk-64`` when it exists, otherwise a random checkpoint of the
same default architecture (latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")

import rclpy  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from vans_ros.checkpoints import shipped_model_dir  # noqa: E402
from vans_ros.plan_messages import rgb_to_image, seconds_to_time  # noqa: E402
from vans_ros.planner_node import PlannerNode  # noqa: E402

INSTRUCTION = "push the red button"
# The robot's proprioception at every frame (tool point in m, gripper open), for a checkpoint whose
# IDM reads it; the same for every plan, as the frames are.
STATE = np.array([0.1, -0.1, 0.6, 1.0], np.float32)


class Camera(Node):
    def __init__(self):
        super().__init__("bench_camera")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, "camera/image_raw", reliable)
        self.state_pub = self.create_publisher(JointState, "joint_states", reliable)
        self.instruction_pub = self.create_publisher(String, "instruction", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.cmd_received = threading.Event()
        self.cmd_time = 0.0
        self.create_subscription(TwistStamped, "/planner/cmd", self._on_cmd, reliable)

    def _on_cmd(self, msg):
        self.cmd_time = time.perf_counter()
        self.cmd_received.set()

    def publish(self, rgb: np.ndarray, stamp_s: float, encoding: str = "rgb8") -> None:
        header = Header(stamp=seconds_to_time(stamp_s), frame_id="bench_camera")
        self.state_pub.publish(JointState(header=header, name=["ee_x", "ee_y", "ee_z", "gripper"],
                                          position=STATE.tolist()))
        msg = rgb_to_image(rgb, header)
        if encoding == "bgr8":
            msg.encoding, msg.data = "bgr8", np.ascontiguousarray(rgb[..., ::-1]).tobytes()
        self.image_pub.publish(msg)


def model_dir(workdir: Path) -> tuple[Path, str]:
    shipped = shipped_model_dir()
    if shipped is not None:
        return shipped, "shipped"
    from vans_engine.testing import tiny_checkpoint

    return tiny_checkpoint(workdir / "default", size="default"), "random weights, default architecture"


def start(folder: Path, **parameters):
    overrides = {"model_dir": str(folder), **parameters}
    planner = PlannerNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    camera = Camera()
    executor = SingleThreadedExecutor()
    executor.add_node(planner)
    executor.add_node(camera)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    camera.instruction_pub.publish(String(data=INSTRUCTION))
    deadline = time.monotonic() + 10
    while planner.instruction != INSTRUCTION and time.monotonic() < deadline:
        time.sleep(0.01)
    return planner, camera, executor


def stop(planner, camera, executor) -> None:
    planner.close()
    executor.shutdown(timeout_sec=5)
    for node in (planner, camera):
        node.destroy_node()


def overhead(folder: Path, plans: int, warmup: int) -> dict:
    planner, camera, executor = start(folder, plan_period_s=0.0, seed=0)
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    stamp = 100.0
    for frame in context[:-1]:  # fill the context: frames one control period apart
        stamp += 0.05
        camera.publish(frame, stamp)
        time.sleep(0.3)
    while not planner.worker.idle():
        time.sleep(0.01)
    frames = planner.context_buffer.snapshot()
    end_to_end, direct, overheads = [], [], []
    seed = planner.worker.plans_done + planner.worker.plans_stale
    for i in range(warmup + plans):
        # the node's plan i: publish the last context frame again, one period later
        stamp += 0.05
        camera.cmd_received.clear()
        sent = time.perf_counter()
        camera.publish(context[-1], stamp)
        if not camera.cmd_received.wait(60):
            raise RuntimeError("no plan within 60 s")
        node_ms = (camera.cmd_time - sent) * 1000
        while len(planner.planner_ms) < i + 1:  # the node's own timing of Planner.plan for this plan
            time.sleep(0.001)
        inside_ms = planner.planner_ms.last()
        # the same work without the node: same planner, context and seed
        t0 = time.perf_counter()
        planner.planner.plan(planner.context_buffer.snapshot(), INSTRUCTION, seed=seed + i, state=STATE)
        plan_ms = (time.perf_counter() - t0) * 1000
        if i >= warmup:
            end_to_end.append(node_ms)
            direct.append(plan_ms)
            overheads.append(node_ms - inside_ms)
        while not planner.worker.idle():
            time.sleep(0.005)
    result = {
        "plans": plans,
        "end_to_end_ms": {"p50": float(np.median(end_to_end)), "p95": float(np.percentile(end_to_end, 95))},
        "planner_plan_ms": {"p50": float(np.median(direct)), "p95": float(np.percentile(direct, 95))},
        # per plan: end to end minus the Planner.plan call inside that same plan
        "overhead_ms": {"p50": float(np.median(overheads)), "p95": float(np.percentile(overheads, 95)),
                        "max": float(np.max(overheads))},
        # medians of the two series (noisier: different calls, on a shared CPU)
        "overhead_ms_medians_difference": float(np.median(end_to_end) - np.median(direct)),
        "node_encode_publish_ms_p50": planner.overhead_ms.percentile(50),
        "context_shape": list(frames.shape),
    }
    stop(planner, camera, executor)
    return result


def soak(folder: Path, minutes: float, rate_hz: float, warmup_s: float = 60.0) -> dict:
    planner, camera, executor = start(folder, plan_period_s=0.2)
    process = psutil.Process()
    frames = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8) for i in range(8)]
    samples, started = [], time.monotonic()
    next_frame, next_sample, n = started, started + warmup_s, 0
    end = started + warmup_s + minutes * 60
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_frame:
            camera.publish(frames[n % len(frames)], time.time(), encoding="bgr8")
            n += 1
            next_frame += 1.0 / rate_hz
        if now >= next_sample:
            samples.append((round(now - started - warmup_s, 1), process.memory_info().rss / 2**20))
            next_sample += 10.0
        time.sleep(max(0.0, min(next_frame, next_sample) - time.monotonic()))
    t, rss = np.array(samples).T
    result = {
        "minutes": minutes, "rate_hz": rate_hz, "frames_sent": n, "frames_received": planner.frames_received,
        "plans": planner.worker.plans_done, "dropped_frames": planner.dropped_frames,
        "plan_latency_ms": {"p50": planner.latency_ms.percentile(50), "p95": planner.latency_ms.percentile(95)},
        "rss_mib": {"after_warmup": float(rss[0]), "end": float(rss[-1]), "max": float(rss.max())},
        "rss_growth_mib": float(rss[-1] - rss[0]),
        "rss_slope_mib_per_min": float(np.polyfit(t / 60, rss, 1)[0]) if len(t) > 2 else float("nan"),
        "rss_samples": [[float(a), round(float(b), 1)] for a, b in samples],
    }
    stop(planner, camera, executor)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", type=int, default=30, help="timed plans (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="also soak for this long; 0 = no soak")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera rate of the soak")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ros_node_cpu.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as workdir, rclpy.init():
        folder, weights = model_dir(Path(workdir))
        report = {
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
            "model": str(folder) if weights == "shipped" else weights,
            "overhead": overhead(folder, args.plans, args.warmup),
        }
        print(json.dumps(report["overhead"], indent=2))
        if args.soak_minutes:
            report["soak"] = soak(folder, args.soak_minutes, args.rate_hz)
            print(json.dumps({k: v for k, v in report["soak"].items() if k != "rss_samples"}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
