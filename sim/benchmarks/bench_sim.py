"""Simulator speed, side by side in one run: vans_sim against robodesk 1.0.0, and recording throughput.

    make bench                                   # or:
    .venv/bin/python sim/benchmarks/bench_sim.py --out benchmarks/results/sim.json

robodesk runs in its own venv (``sim/benchmarks/setup_robodesk_venv.sh`` makes it: robodesk needs an
old dm_control, mujoco and the retired gym API); pass ``--skip-robodesk`` to leave it out. Every
figure is steps (or episodes) per second of wall time on this machine, with a 64x64 camera image
rendered at every step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from vans_sim.env import RoboDeskEnv  # noqa: E402
from vans_sim.record import RecordConfig, record  # noqa: E402
from vans_sim.tasks import TASKS  # noqa: E402

HERE = Path(__file__).resolve().parent
ROBODESK_PYTHON = HERE.parents[1] / ".bench-venvs" / "robodesk" / "bin" / "python"


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def steps_per_second(steps: int, observe_image: bool, task: str = "open_slide", shadows: bool = False,
                     cameras: tuple[str, ...] = ("desk",)) -> float:
    env = RoboDeskEnv(task, image_size=64, observe_image=observe_image, shadows=shadows, cameras=cameras)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    env.step(np.zeros(4))  # the first render creates the GL context; keep it out of the timing
    started = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - started
    env.close()
    return steps / elapsed


def robodesk_steps_per_second(steps: int) -> dict | None:
    if not ROBODESK_PYTHON.exists():
        subprocess.run(["bash", str(HERE / "setup_robodesk_venv.sh")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "robodesk.json"
        subprocess.run([str(ROBODESK_PYTHON), str(HERE / "robodesk_baseline.py"), "--steps", str(steps),
                        "--json", str(out)], check=True, env={**os.environ, "MUJOCO_GL": "egl"})
        return json.loads(out.read_text())


def recording_throughput(workers: int, episodes_per_task: int) -> float:
    config = RecordConfig(tasks=tuple(TASKS), episodes=episodes_per_task, shard_size=episodes_per_task)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = record(config, tmp, workers=workers, progress=False)
        elapsed = time.perf_counter() - started
    return summary["episodes"] / elapsed * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps timed for vans_sim")
    parser.add_argument("--robodesk-steps", type=int, default=300, help="steps timed for robodesk")
    parser.add_argument("--record-episodes", type=int, default=4, help="episodes per task for the recording figures")
    parser.add_argument("--skip-robodesk", action="store_true", help="leave robodesk out")
    parser.add_argument("--out", default="benchmarks/results/sim.json", help="JSON results")
    args = parser.parse_args()

    results: dict = {
        "date": date.today().isoformat(), "machine": machine_description(),
        "mujoco_gl": os.environ["MUJOCO_GL"], "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    results["vans_sim_steps_per_s_image64"] = steps_per_second(args.steps, True)
    results["vans_sim_steps_per_s_no_image"] = steps_per_second(args.steps, False)
    # the sun's shadows (RoboDeskEnv(shadows=True)), against the same plain run
    results["vans_sim_steps_per_s_image64_shadows"] = steps_per_second(args.steps, True, shadows=True)
    results["shadows_slowdown"] = (results["vans_sim_steps_per_s_image64"]
                                   / results["vans_sim_steps_per_s_image64_shadows"])
    # the side camera beside the desk camera (RoboDeskEnv(cameras=("desk", "side"))): two renders a step
    results["vans_sim_steps_per_s_image64_two_cameras"] = steps_per_second(args.steps, True, cameras=("desk", "side"))
    results["two_cameras_slowdown"] = (results["vans_sim_steps_per_s_image64"]
                                       / results["vans_sim_steps_per_s_image64_two_cameras"])
    if not args.skip_robodesk:
        rd = robodesk_steps_per_second(args.robodesk_steps)
        results["robodesk_steps_per_s_image64"] = rd["steps_per_s"]
        results["speedup_vs_robodesk"] = results["vans_sim_steps_per_s_image64"] / rd["steps_per_s"]
    for workers in (1, 2):
        results[f"record_episodes_per_min_w{workers}"] = recording_throughput(workers, args.record_episodes)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("| measure | value |\n|---|---:|")
    for key, value in results.items():
        print(f"| {key} | {value:.1f} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
