"""Distilled vs teacher sampler, side by side in one run: the shipped planner at its distilled step
count against the teacher's step count, on the same context clips, interleaved so that both see the
same machine load.

    python training/benchmarks/bench_distilled.py --model models/vans-desk-64 --teacher-steps 20 \\
        --out benchmarks/results/distilled_vs_teacher_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
from tqdm import tqdm
from vans_engine.planner import Planner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/vans-desk-64", help="planner checkpoint")
    parser.add_argument("--backend", default="onnxruntime", help="torch or onnxruntime")
    parser.add_argument("--teacher-steps", type=int, default=20, help="the teacher's denoising steps")
    parser.add_argument("--repeats", type=int, default=10, help="timed plans per sampler")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args(argv)

    planner = Planner.from_pretrained(args.model, backend=args.backend)
    student_steps = planner.config.num_inference_steps
    size, t = planner.config.image_size, planner.config.context_frames
    clip = np.random.default_rng(0).integers(0, 256, (t, size, size, 3), dtype=np.uint8)
    state = np.full(planner.idm.config.state_dim, 0.5, np.float32)  # timing only: any state does
    samplers = {"distilled": student_steps, "teacher": args.teacher_steps}
    for steps in samplers.values():  # warm-up: sessions, caches
        planner.plan(clip, "push the red button", steps=steps, seed=0, state=state)
    totals = {name: [] for name in samplers}
    vdm = {name: [] for name in samplers}
    for i in tqdm(range(args.repeats), desc="plans"):
        for name, steps in samplers.items():
            started = time.perf_counter()
            plan = planner.plan(clip, "push the red button", steps=steps, seed=i, state=state)
            totals[name].append((time.perf_counter() - started) * 1000)
            vdm[name].append(plan.timings["vdm"])
    result = {
        "date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, CPU only",
        "backend": args.backend, "model": args.model, "steps": samplers,
        "plan_ms_p50": {n: float(np.median(v)) for n, v in totals.items()},
        "vdm_ms_p50": {n: float(np.median(v)) for n, v in vdm.items()},
    }
    result["denoiser_calls_ratio"] = args.teacher_steps / student_steps
    result["plan_speedup"] = result["plan_ms_p50"]["teacher"] / result["plan_ms_p50"]["distilled"]
    result["vdm_speedup"] = result["vdm_ms_p50"]["teacher"] / result["vdm_ms_p50"]["distilled"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
