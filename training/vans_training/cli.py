"""``vans-train``: train the planner's components, assemble a planner checkpoint, evaluate it.

Stages (each resumes from OUTPUT_DIR/checkpoints/last when run again):

    vans-train vlm-sft   --config training/configs/vlm_sft.yaml      # next-event captions, cross-entropy
    vans-train vdm       --config training/configs/vdm.yaml          # flow-matching video teacher
    vans-train distill   --config training/configs/distill.yaml      # few-step student by reflow
    vans-train idm       --config training/configs/idm.yaml          # inverse dynamics
    vans-train feature-idm --config training/configs/feature_idm.yaml  # action head on the VDM's tokens
    vans-train alignment --config training/configs/alignment.yaml    # video-caption contrastive model
    vans-train dagger --model runs/idm-shift/final --base data/train-180 --out data/train-180-dagger \
        --seed-start 1000                                             # one DAgger round for the IDM

Joint-GRPO, from the assembled SFT planner (models/vans-desk-64-sft):

    vans-train grpo-vlm   --config training/configs/grpo_vlm.yaml    # stage 1: VLM, the VDM frozen
    vans-train grpo-vdm   --config training/configs/grpo_vdm.yaml    # stage 2: VDM, the stage-1 VLM frozen
    vans-train grpo-joint --config training/configs/grpo_joint.yaml  # the all-in-one ablation

Any config field can be overridden: ``--set max_steps=20 --set vdm.num_layers=2``. Several GPUs:
``torchrun --standalone --nproc_per_node=N -m vans_training.cli vdm --config ...``.

Then:

    vans-train assemble --vlm runs/vlm-sft --vdm runs/distill --idm runs/idm --alignment runs/alignment \\
        --steps 2 --out models/vans-desk-64
    vans-train eval --model models/vans-desk-64 --data data/heldout --out runs/eval-heldout
    vans-train idm-eval --model models/vans-desk-64 --data data/heldout --out runs/idm-eval-heldout
    vans-train curves runs/vlm-sft runs/vdm runs/distill runs/idm runs/alignment --out reports/training/curves.png
    vans-train closed-loop --model models/vans-desk-64 --idm-model models/vans-desk-64 --episodes 10 --out runs/closed_loop
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vans_training.stages import STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vans-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STAGES:
        p = sub.add_parser(name, help=f"train the {name} stage (resumes when run again)")
        p.add_argument("--config", help="YAML file of config fields (training/configs/*.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. max_steps=20 or vdm.num_layers=2 (repeatable)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("assemble", help="build a planner checkpoint from the stages' final models")
    p.add_argument("--vlm", required=True, help="vlm-sft output folder (or a VLM folder)")
    p.add_argument("--vdm", required=True, help="vdm or distill output folder (or a VDM folder)")
    p.add_argument("--idm", required=True, help="idm output folder (or an IDM folder)")
    p.add_argument("--alignment", help="alignment output folder; copied beside the components")
    p.add_argument("--steps", type=int, required=True, help="denoising steps the planner uses by default")
    p.add_argument("--motion-gain", type=float, default=1.0,
                   help="factor on the IDM's dx, dy, dz in every plan (PlannerConfig.motion_gain; 1 = as predicted)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")

    p = sub.add_parser("dagger", help="one DAgger round: roll the oracle-video loop with an IDM (or the whole "
                       "planner) on train scenes and add the scripted expert's branches from the states it reaches "
                       "to a dataset")
    p.add_argument("--model", required=True, help="IDM folder or planner checkpoint that drives the loop")
    p.add_argument("--driver", choices=("idm", "planner"), default="idm",
                   help="idm: the IDM on the expert's true future frames; planner: the planner from its camera "
                        "history (VLM, VDM and IDM, --model a planner checkpoint)")
    p.add_argument("--base", required=True, help="vans-sim record dataset (train split) to copy and extend")
    p.add_argument("--out", required=True, help="output dataset folder (or .hdf5)")
    p.add_argument("--seed-start", type=int, required=True, help="first episode seed (use seeds no dataset holds)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per task")
    p.add_argument("--idm-fraction", type=float, default=0.8,
                   help="share of plans executed with the driver's chunk (the expert's otherwise)")
    p.add_argument("--tasks", default="all", help="'all' or comma-separated task names")

    p = sub.add_parser("eval", help="next-event metrics of a planner checkpoint on held-out data")
    p.add_argument("--model", required=True, help="planner checkpoint folder (with alignment/ for the alignment score)")
    p.add_argument("--data", default="data/heldout", help="a vans-sim record dataset (default: the held-out test set)")
    p.add_argument("--split", default="all", help="train, valid, test (by seed) or all")
    p.add_argument("--out", required=True, help="folder for eval.json, eval.md and samples.gif")
    p.add_argument("--steps", type=int, help="denoising steps (the checkpoint's default otherwise)")
    p.add_argument("--samples", type=int, default=256, help="samples evaluated (a fixed, seeded subset)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backend", default="torch", help="planner backend: torch or onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recorded-captions", action="store_true",
                   help="condition the VDM on each sample's recorded caption instead of the VLM's, to measure "
                        "what the VLM's caption errors cost the frames and the plans")

    p = sub.add_parser("idm-eval", help="the IDM alone on a recording's true frames: its error per action "
                       "component (dx, dy, dz, gripper), overall and per task")
    p.add_argument("--model", required=True, help="planner checkpoint or IDM folder")
    p.add_argument("--data", default="data/heldout", help="a vans-sim record dataset showing the IDM's cameras "
                   "(default: the held-out test set)")
    p.add_argument("--split", default="all", help="train, valid, test (by seed) or all")
    p.add_argument("--anchor-every", type=int, default=4, help="steps between scored anchors")
    p.add_argument("--out", required=True, help="folder for idm_eval.json and idm_eval.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("compare", help="next-event table of several eval outputs side by side (OUT.md, OUT.png)")
    p.add_argument("--run", dest="runs", action="append", required=True, metavar="NAME=DIR",
                   help="a row: its name and a vans-train eval output folder (repeatable; the first is the baseline)")
    p.add_argument("--out", required=True, help="path without suffix of the .md and .png to write")

    p = sub.add_parser("curves", help="training-loss curves of stage runs in one PNG")
    p.add_argument("runs", nargs="+", help="stage output folders (with log.jsonl)")
    p.add_argument("--keys", default="loss", help="comma-separated logged scalars to draw (default: loss; "
                   "GRPO runs: reward,reward_rouge_l,...)")
    p.add_argument("--smooth", type=int, default=1, help="moving average over this many logged steps")
    p.add_argument("--out", required=True, help="PNG to write")

    from vans_training import closed_loop

    closed_loop.add_arguments(sub.add_parser("closed-loop", help="closed-loop success table of several policies "
                                             "on both splits (vans-sim score side by side)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in STAGES:
            from vans_training.config import load_config
            from vans_training.stages import get_stage
            from vans_training.trainer import train

            stage = get_stage(args.command)
            config = load_config(stage.config_class, args.config, args.overrides)
            print(f"{args.command}: final model in {train(stage, config, progress=not args.quiet)}")
        elif args.command == "closed-loop":
            from vans_training import closed_loop

            return closed_loop.run(args)
        elif args.command == "compare":
            from vans_training.compare import compare

            print(f"wrote {compare(args.runs, args.out)}")
        elif args.command == "curves":
            from vans_training.curves import plot_curves

            print(f"wrote {plot_curves(args.runs, args.out, tuple(args.keys.split(',')), max(1, args.smooth))}")
        elif args.command == "dagger":
            import torch
            from vans_training.dagger import record_dagger

            torch.set_num_threads(1)
            tasks = None if args.tasks == "all" else args.tasks.split(",")
            print(record_dagger(args.model, args.base, args.out, args.seed_start, args.episodes, args.idm_fraction,
                                tasks, driver=args.driver))
        elif args.command == "idm-eval":
            from vans_training.idm_eval import evaluate_idm

            report = evaluate_idm(args.model, args.data, args.out, split=args.split, anchor_every=args.anchor_every,
                                  progress=not args.quiet)
            print((Path(args.out) / "idm_eval.md").read_text())
        elif args.command == "assemble":
            from vans_training.assemble import assemble

            out = assemble(args.vlm, args.vdm, args.idm, args.steps, args.out, args.alignment, args.motion_gain)
            print(f"wrote {out}")
        else:
            from vans_training.evaluate import evaluate

            evaluate(args.model, args.data, args.out, split=args.split, steps=args.steps, samples=args.samples,
                     batch_size=args.batch_size, backend=args.backend, seed=args.seed,
                     recorded_captions=args.recorded_captions)
    except (ValueError, FileNotFoundError) as error:
        print(f"vans-train: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
