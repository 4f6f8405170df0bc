"""``vans-ros-demo``: the sim camera and the planner in closed loop over ROS 2, for N episodes.

    vans-ros-demo --episodes 3 --out outputs/demo          # what `make demo` runs
    vans-ros-demo --task open_drawer --model DIR --ros-args --params-file ros2_ws/src/vans_ros/config/planner.yaml

Both nodes and a recorder run in one process on one executor (planning has its own thread). The
planner is the shipped model (``models/vans-desk-64``) when it exists; otherwise a tiny random
checkpoint is written into the output folder and the report says, at the top, that it is untrained.
Writes ``report.md``, ``report.json`` (success per episode, plan latency) and ``camera_vs_foreseen.gif``
(left: the camera; right: the frame the planner foresaw for that moment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import Image

from vans_ros import plan_messages
from vans_ros.checkpoints import resolve_model_dir
from vans_ros.planner_node import RELIABLE_10, PlannerNode
from vans_ros.sim_camera_node import SimCameraNode

MAX_GIF_FRAMES = 400


def image_to_rgb(msg: Image) -> np.ndarray:
    """An rgb8 Image as published by these nodes -> ``(H, W, 3)`` uint8."""
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * 3].reshape(
        msg.height, msg.width, 3)


class Recorder(Node):
    """Keeps the camera frames and the foreseen frames, by stamp, for the GIF."""

    def __init__(self, foreseen_topic: str):
        super().__init__("demo_recorder")
        self.camera: list[tuple[float, np.ndarray]] = []
        self.foreseen: dict[int, np.ndarray] = {}  # stamp in ms -> newest foreseen frame for that moment
        self.create_subscription(Image, "camera/image_raw", self._on_camera, qos_profile_sensor_data)
        self.create_subscription(Image, foreseen_topic, self._on_foreseen, RELIABLE_10)

    def _on_camera(self, msg: Image) -> None:
        if len(self.camera) < MAX_GIF_FRAMES:
            self.camera.append((plan_messages.time_to_seconds(msg.header.stamp), image_to_rgb(msg)))

    def _on_foreseen(self, msg: Image) -> None:
        self.foreseen[round(plan_messages.time_to_seconds(msg.header.stamp) * 1000)] = image_to_rgb(msg)

    def gif_frames(self, period_s: float, scale: int = 2) -> list[np.ndarray]:
        """Camera | the newest frame foreseen for within half a period of it (grey when none was)."""
        stamps = np.array(sorted(self.foreseen)) if self.foreseen else np.zeros(0)
        rows = []
        for stamp_s, rgb in self.camera:
            foreseen = np.full_like(rgb, 128)
            if len(stamps):
                nearest = stamps[np.abs(stamps - stamp_s * 1000).argmin()]
                if abs(nearest - stamp_s * 1000) <= period_s * 500:
                    foreseen = self.foreseen[int(nearest)]
            row = np.concatenate([rgb, np.full((rgb.shape[0], 2, 3), 255, np.uint8), foreseen], axis=1)
            rows.append(row.repeat(scale, axis=0).repeat(scale, axis=1))
        return rows


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vans-ros-demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=3, help="episodes to run (default 3)")
    parser.add_argument("--max-steps", type=int, default=0, help="steps before an episode is cut; 0 (default) = "
                        "the task's own limit")
    parser.add_argument("--task", default="push_red", help="vans_sim task (default push_red)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (default 0)")
    parser.add_argument("--model", default="", help="checkpoint folder; default: the shipped models/vans-desk-64, "
                        "or a tiny untrained checkpoint written into --out when none is shipped")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="report folder")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.max_steps < 0:
        parser.error("--episodes must be >= 1 and --max-steps >= 0")
    return args


def run(args: argparse.Namespace, ros_args: list[str] | None = None) -> dict:
    """Run the closed loop and write the report; returns report.json's content."""
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir, untrained_stand_in = resolve_model_dir(args.model, fallback_dir=args.out / "tiny-checkpoint")
    if untrained_stand_in:
        print(f"vans-ros-demo: NO TRAINED MODEL at models/vans-desk-64: planning with an UNTRAINED tiny checkpoint "
              f"({model_dir}); expect no successes", file=sys.stderr)
    # Both nodes live in this process: discovery need not leave the machine.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with rclpy.init(args=ros_args):
        planner = PlannerNode(parameter_overrides=[Parameter("model_dir", value=str(model_dir))])
        sim = SimCameraNode(
            parameter_overrides=[Parameter("task", value=args.task), Parameter("seed", value=args.seed),
                                 Parameter("episodes", value=args.episodes),
                                 Parameter("max_episode_steps", value=args.max_steps),
                                 # the simulator renders the views the planner draws and reads
                                 Parameter("cameras", value=",".join(planner.planner.config.cameras))],
            cli_args=["--ros-args", "-r", f"action_plan:={planner.get_fully_qualified_name()}/action_plan"])
        recorder = Recorder(f"{planner.get_fully_qualified_name()}/foreseen/image")
        executor = SingleThreadedExecutor()
        for node in (planner, sim, recorder):
            executor.add_node(node)
        started = time.monotonic()
        try:
            while not sim.done and time.monotonic() - started < args.timeout_s:
                executor.spin_once(timeout_sec=0.1)
        finally:
            elapsed = time.monotonic() - started
            planner.close()
            sim.close()
            for node in (planner, sim, recorder):
                executor.remove_node(node)
                node.destroy_node()
    ros_options = ros_args[ros_args.index("--ros-args"):] if ros_args and "--ros-args" in ros_args else []
    return _write_report(args, model_dir, planner, sim, recorder, untrained_stand_in, elapsed, ros_options)


def _write_report(args, model_dir, planner, sim, recorder, untrained_stand_in, elapsed, ros_options) -> dict:
    import imageio.v2 as imageio

    gif = args.out / "camera_vs_foreseen.gif"
    frames = recorder.gif_frames(planner.period_s)
    if frames:
        imageio.mimsave(gif, frames, duration=planner.period_s * 1000, loop=0)
    episodes = sim.results
    trained = planner.planner.trained and not untrained_stand_in
    report = {
        "model_dir": str(model_dir), "trained": trained, "task": args.task, "instruction": sim.task.instruction,
        "episodes": episodes, "success_rate": float(np.mean([e["success"] for e in episodes])) if episodes else 0.0,
        "completed": len(episodes) == args.episodes, "wall_s": round(elapsed, 1),
        "plans": planner.worker.plans_done,
        "plan_latency_ms": {"p50": planner.latency_ms.percentile(50), "p95": planner.latency_ms.percentile(95)},
        "planner_ms_p50": planner.planner_ms.percentile(50),
        "node_overhead_ms_p50": planner.overhead_ms.percentile(50),
        "dropped_frames": planner.dropped_frames, "backend": planner.params["backend"],
        "gif": gif.name if frames else None, "gif_frames": len(frames),
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    lines = ["# vans_ros closed-loop demo (sim camera + planner over ROS 2)", ""]
    if not trained:
        lines += ["> **The planner is UNTRAINED** (`" + str(model_dir) + "`): no trained model is shipped at "
                  "`models/vans-desk-64` yet, so this run uses a tiny random checkpoint. It shows the ROS loop "
                  "working, not a policy: expect no successes.", ""]
    options = f" --max-steps {args.max_steps}" if args.max_steps else ""
    options += f" --model {args.model}" if args.model else ""
    options += f" --task {args.task} --seed {args.seed}" + "".join(f" {option}" for option in ros_options)
    lines += [f"- command: `vans-ros-demo --episodes {args.episodes}{options}`",
              f"- model: `{model_dir}` ({'trained' if trained else 'untrained'}), backend {report['backend']}",
              f"- task: `{args.task}` ({sim.task.instruction!r}), held-out split",
              f"- success: **{sum(e['success'] for e in episodes)}/{len(episodes)}** episodes"
              + ("" if report["completed"] else f" (stopped after {args.timeout_s:.0f} s)"),
              f"- plans: {report['plans']}; plan latency p50 {report['plan_latency_ms']['p50']:.1f} ms, "
              f"p95 {report['plan_latency_ms']['p95']:.1f} ms (plan requested -> published); "
              f"Planner.plan p50 {report['planner_ms_p50']:.1f} ms; node overhead p50 "
              f"{report['node_overhead_ms_p50']:.1f} ms",
              f"- wall time: {report['wall_s']} s", "",
              "| episode | seed | success | steps | plans | steps a plan arrived after its frame (mean) |",
              "|---:|---:|:---:|---:|---:|---:|"]
    lines += [f"| {e['episode']} | {e['seed']} | {'yes' if e['success'] else 'no'} | {e['steps']} | {e['plans']} | "
              f"{'' if e['plan_late_steps'] is None else e['plan_late_steps']} |" for e in episodes]
    if frames:
        lines += ["", f"![camera (left) against the frame foreseen for that moment (right)]({gif.name})"]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    return report


def main(args=None):
    argv = sys.argv if args is None else args
    options = _parse(remove_ros_args(argv)[1:])
    try:
        report = run(options, argv)
    except (KeyboardInterrupt, ExternalShutdownException):
        return
    print(f"demo report: {options.out / 'report.md'} (success {report['success_rate']:.0%} over "
          f"{len(report['episodes'])} episodes; {'trained' if report['trained'] else 'UNTRAINED'} model)")


if __name__ == "__main__":
    main()
