"""``vans``: ask the planner what happens next, export its graphs, and time it.

Examples:

    vans predict --model models/vans-desk-64 --video clip.mp4 --instruction "push the red button" --out answer.mp4
    vans predict --model DIR --video frames/ --instruction "open the drawer" --out answer.mp4 --samples 3 --seed 0
    vans predict --model DIR --video clip.mp4 --instruction "push the red button" --state 0.1 -0.1 0.6 1.0 --out answer.mp4
    vans export --model models/vans-desk-64 --format onnx
    vans bench --model models/vans-desk-64 --backend onnxruntime --json bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vans_engine.backends import BACKENDS


def cmd_predict(args: argparse.Namespace) -> int:
    from vans_engine.planner import Planner
    from vans_engine.video_io import read_frames, resize_frames, write_video

    planner = Planner.from_pretrained(args.model, backend=args.backend, device=args.device)
    if planner.needs_state and args.state is None:
        raise ValueError(f"{args.model} reads proprioception: give --state X Y Z GRIPPER (the tool point "
                         f"in metres and the gripper opening 0-1 at the clip's last frame)")
    clip = resize_frames(read_frames(args.video), planner.config.frame_size)
    t = planner.config.context_frames
    context = np.concatenate([np.repeat(clip[:1], max(0, t - len(clip)), axis=0), clip])[-t:]
    plan = planner.plan(context, args.instruction, num_samples=args.samples, steps=args.steps, seed=args.seed,
                        state=None if args.state is None else np.asarray(args.state, np.float32))
    answers = [plan, *plan.alternatives]
    for k, p in enumerate(answers):
        print(f"caption[{k}]: {p.caption}")
    # Side by side: the context (then its last frame held) | each sampled future.
    k = planner.config.future_frames
    left = np.concatenate([context, np.repeat(context[-1:], k, axis=0)])
    rights = [np.concatenate([np.repeat(context[-1:], t, axis=0), p.frames]) for p in answers]
    write_video(args.out, np.concatenate([left, *rights], axis=2), fps=args.fps)
    actions_path = Path(args.actions or Path(args.out).with_name("actions.json"))
    actions_path.write_text(json.dumps({
        "instruction": args.instruction, "control_period_s": planner.config.control_period_s,
        "action_names": ["dx", "dy", "dz", "gripper"],
        "plans": [{"caption": p.caption, "actions": p.actions.round(5).tolist()} for p in answers],
        "timings_ms": plan.timings, "backend": args.backend, "trained": planner.trained,
    }, indent=2))
    print(f"wrote {args.out} and {actions_path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vans_engine.export import export_onnx, export_tensorrt
    from vans_engine.planner import Planner

    planner = Planner.from_pretrained(args.model, backend="torch", device="cpu")
    paths = export_onnx(planner) if args.format == "onnx" else export_tensorrt(planner, enable_fp16=not args.fp32)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from vans_engine.bench import run_bench

    result = run_bench(args.model, backend=args.backend, device=args.device, steps=args.steps,
                       repeats=args.repeats, batch_sizes=tuple(args.batch_sizes),
                       cuda_graphs=not args.no_cuda_graphs, caption_tokens=args.caption_tokens)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vans", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_model_args(p, backend_default="onnxruntime"):
        p.add_argument("--model", required=True, help="checkpoint folder (model_index.json and components)")
        p.add_argument("--backend", default=backend_default, choices=BACKENDS, help="inference backend")
        p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")

    p = sub.add_parser("predict", help="predict the next event of a clip: caption, answer video, actions")
    add_model_args(p)
    p.add_argument("--video", required=True, help="context clip: a video file (MP4, GIF) or a folder of frames; "
                   "for a checkpoint of several cameras, their views side by side")
    p.add_argument("--instruction", required=True, help='what should happen, e.g. "push the red button"')
    p.add_argument("--out", required=True, help="answer video (MP4 or GIF): context and prediction side by side")
    p.add_argument("--actions", help="where to write the actions (default: actions.json beside --out)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the checkpoint's)")
    p.add_argument("--samples", type=int, default=1, help="futures to sample; more than one samples captions too")
    p.add_argument("--seed", type=int, help="makes captions and frames reproducible")
    p.add_argument("--state", type=float, nargs=4, metavar=("X", "Y", "Z", "GRIPPER"),
                   help="the robot's tool point (m) and gripper opening (0 closed - 1 open) at the clip's last "
                        "frame; required by checkpoints whose IDM or VLM reads proprioception")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the answer video")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export the VDM denoiser and IDM to ONNX, or build TensorRT engines")
    p.add_argument("--model", required=True, help="checkpoint folder; files go to MODEL/exported/")
    p.add_argument("--format", default="onnx", choices=("onnx", "tensorrt"), help="what to write")
    p.add_argument("--fp32", action="store_true", help="TensorRT: no fp16 kernels")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="per-stage and whole-plan latency, plans/s at batch 1 and 16, peak memory")
    add_model_args(p)
    p.add_argument("--steps", type=int, help="denoising steps (default: the checkpoint's)")
    p.add_argument("--repeats", type=int, default=20, help="timed plans at batch 1")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="batches to measure plans/s at")
    p.add_argument("--caption-tokens", type=int, default=16, help="tokens every timed caption is decoded to")
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="torch on CUDA: float32 eager instead of bf16 with CUDA graphs")
    p.add_argument("--json", help="write the results here")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vans_engine.checkpoint import CheckpointError

    try:
        return args.func(args)
    except (ValueError, CheckpointError, FileNotFoundError) as e:
        print(f"vans {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
