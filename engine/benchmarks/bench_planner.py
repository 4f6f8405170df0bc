"""Planner speed, side by side in one run, for BENCHMARKS.md.

    make bench                                               # CPU: ONNX Runtime against PyTorch eager
    python engine/benchmarks/bench_planner.py --device cuda  # GPU: bf16 + CUDA graphs against eager

Times a planner of the default architecture (the one the shipped model trains) with random weights:
latency does not depend on the weights, and every caption is decoded to the same 16 tokens. With
``--model DIR`` it times that checkpoint instead. On the CPU it also times the same architecture
planning from two camera views side by side (64x128 frames: the VDM draws twice the tokens, the IDM
reads both views), and acting from an action head on the VDM's tokens (``VideoFeatureIDM``, the shipped
model's kind) instead of the pixel IDM, against the pixel IDM. Writes one JSON with every run and prints
the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from datetime import date
from pathlib import Path

import torch

from vans_engine.bench import run_bench
from vans_engine.planner import PlannerConfig
from vans_engine.testing import tiny_checkpoint


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", help="checkpoint to time (default: the default architecture, random weights)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps")
    parser.add_argument("--repeats", type=int, default=20, help="timed plans at batch 1")
    parser.add_argument("--out", default="benchmarks/results/planner_cpu.json", help="JSON results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(tiny_checkpoint(Path(tmp) / "default", size="default"))
        if args.device == "cpu":
            runs = {
                "onnxruntime": run_bench(model, "onnxruntime", "cpu", args.steps, args.repeats, (1, 16)),
                "torch_eager": run_bench(model, "torch", "cpu", args.steps, args.repeats, (1, 16)),
            }
            ratio = runs["torch_eager"]["plan_ms"]["p50"] / runs["onnxruntime"]["plan_ms"]["p50"]
            ratios = {"onnxruntime_speedup_over_torch_eager_plan_p50": ratio,
                      "onnxruntime_speedup_over_torch_eager_vdm_p50":
                          runs["torch_eager"]["stage_ms"]["vdm"]["p50"] / runs["onnxruntime"]["stage_ms"]["vdm"]["p50"]}
            if not args.model:
                two = tiny_checkpoint(Path(tmp) / "two_cameras", size="default",
                                      config=PlannerConfig(cameras=("desk", "side")))
                runs["onnxruntime_two_cameras"] = run_bench(str(two), "onnxruntime", "cpu", args.steps, args.repeats,
                                                            (1, 16))
                one, both = runs["onnxruntime"], runs["onnxruntime_two_cameras"]
                ratios["two_cameras_cost_over_one_plan_p50"] = both["plan_ms"]["p50"] / one["plan_ms"]["p50"]
                ratios["two_cameras_cost_over_one_vdm_p50"] = both["stage_ms"]["vdm"]["p50"] / one["stage_ms"]["vdm"]["p50"]
                ratios["two_cameras_cost_over_one_idm_p50"] = both["stage_ms"]["idm"]["p50"] / one["stage_ms"]["idm"]["p50"]
                feature = tiny_checkpoint(Path(tmp) / "feature_idm", size="default", feature_idm=True)
                runs["onnxruntime_feature_idm"] = run_bench(str(feature), "onnxruntime", "cpu", args.steps,
                                                            args.repeats, (1, 16))
                head = runs["onnxruntime_feature_idm"]
                ratios["feature_idm_cost_over_pixel_idm_plan_p50"] = head["plan_ms"]["p50"] / one["plan_ms"]["p50"]
                ratios["feature_idm_cost_over_pixel_idm_vdm_p50"] = head["stage_ms"]["vdm"]["p50"] / one["stage_ms"]["vdm"]["p50"]
                ratios["feature_idm_cost_over_pixel_idm_idm_p50"] = head["stage_ms"]["idm"]["p50"] / one["stage_ms"]["idm"]["p50"]
        else:
            runs = {
                "torch_bf16_cuda_graphs": run_bench(model, "torch", args.device, args.steps, args.repeats, (1, 16, 64)),
                "torch_fp32_eager": run_bench(model, "torch", args.device, args.steps, args.repeats, (1, 16, 64),
                                              cuda_graphs=False),
                "torch_bf16_cuda_graphs_static_caption_cache": run_bench(
                    model, "torch", args.device, args.steps, args.repeats, (1, 16, 64), caption_cache="static"),
                "torch_bf16_cuda_graphs_graphed_caption": run_bench(
                    model, "torch", args.device, args.steps, args.repeats, (1, 16, 64), caption_cache="graphed"),
            }
            fast, slow = runs["torch_bf16_cuda_graphs"], runs["torch_fp32_eager"]
            graphed = runs["torch_bf16_cuda_graphs_graphed_caption"]
            ratios = {
                "graphed_caption_speedup_over_eager_plan_p50": slow["plan_ms"]["p50"] / graphed["plan_ms"]["p50"],
                "graphs_speedup_over_eager_plan_p50": slow["plan_ms"]["p50"] / fast["plan_ms"]["p50"],
                "graphs_speedup_over_eager_vdm_p50": slow["stage_ms"]["vdm"]["p50"] / fast["stage_ms"]["vdm"]["p50"],
                "graphs_speedup_over_eager_reused_caption_p50":
                    slow["plan_ms_reused_caption"]["p50"] / fast["plan_ms_reused_caption"]["p50"],
            }
    result = {"date": date.today().isoformat(), "machine": machine(), "torch": torch.__version__,
              "steps": args.steps, "runs": runs, "ratios": ratios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name, run in runs.items():
        print(f"{name}: plan p50 {run['plan_ms']['p50']:.1f} ms, p95 {run['plan_ms']['p95']:.1f} ms, "
              f"reused caption p50 {run['plan_ms_reused_caption']['p50']:.1f} ms, "
              + ", ".join(f"{k} {v:.1f}" for k, v in run.items() if k.startswith("plans_per_s")))
    print(json.dumps(ratios, indent=2))


if __name__ == "__main__":
    main()
