"""``vans-sim``: list the tasks, record expert datasets, score policies and compare their scores.

Examples:

    vans-sim tasks
    vans-sim record --tasks all --episodes 100 --image-size 64 --split train --seed-start 0 --out data/train --workers 2
    vans-sim score --policy expert --tasks all --episodes 100 --split heldout --out runs/expert-heldout
    vans-sim score --policy planner --model models/vans-desk-64 --backend onnxruntime --tasks single --out runs/planner
    vans-sim compare expert=runs/expert-heldout planner=runs/planner --out runs/planner-vs-expert
"""

from __future__ import annotations

import argparse
import json
import sys

from vans_sim.env import IMAGE_SIZES
from vans_sim.randomization import RANGES, SPLITS
from vans_sim.tasks import TASKS, resolve_tasks

TASKS_HELP = "'all', 'single', 'chained', or comma-separated task names (see `vans-sim tasks`)"


def cmd_tasks(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({name: {"instruction": t.instruction, "success": t.success_condition,
                                 "events": [e.name for e in t.events], "chained": t.chained,
                                 "max_episode_steps": t.max_episode_steps} for name, t in TASKS.items()}, indent=2))
        return 0
    width = max(map(len, TASKS))
    for name, t in TASKS.items():
        kind = "chained" if t.chained else "single"
        print(f"{name:<{width}}  [{kind}] \"{t.instruction}\"\n{'':<{width}}  success: {t.success_condition}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from vans_sim.record import RecordConfig, record

    config = RecordConfig(
        tasks=tuple(resolve_tasks(args.tasks)), episodes=args.episodes, image_size=args.image_size,
        split=args.split, seed_start=args.seed_start, shadows=args.shadows, cameras=args.cameras,
        perturb_fraction=args.perturb_fraction, noise_std=args.noise_std,
        axis_speed_fraction=args.axis_speed_fraction, min_axis_speed=args.min_axis_speed, shard_size=args.shard_size)
    summary = record(config, args.out, workers=args.workers, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


CAMERAS_HELP = ("comma-separated views in the image, side by side: desk (in front, as RoboDesk's) and side "
                "(at the desk's left end, which shows the desk camera's depth axis); default desk")


def camera_list(text: str) -> tuple[str, ...]:
    """``--cameras desk,side`` -> ``("desk", "side")`` (checked where the scene is built)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _policy_options(args: argparse.Namespace) -> dict:
    options = {}
    for item in args.policy_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--policy-option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    for key in ("model", "backend", "device"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    return options


def _split_overrides(items: list[str]) -> dict[str, str]:
    """``["ee_x,ee_y=train", ...]`` -> ``{"ee_x": "train", "ee_y": "train", ...}``."""
    overrides = {}
    for item in items:
        keys, sep, split = item.partition("=")
        if not sep or not keys:
            raise ValueError(f"--split-override takes QUANTITY[,QUANTITY...]=SPLIT, got {item!r}")
        overrides.update({key.strip(): split.strip() for key in keys.split(",")})
    return overrides


def cmd_score(args: argparse.Namespace) -> int:
    from vans_sim.score import ScoreConfig, format_table, score

    config = ScoreConfig(
        policy=args.policy, tasks=resolve_tasks(args.tasks), episodes=args.episodes, split=args.split,
        split_overrides=_split_overrides(args.split_override), seed_start=args.seed_start, image_size=args.image_size, shadows=args.shadows, cameras=args.cameras,
        num_envs=args.num_envs, vector=args.vector, video=not args.no_video, policy_options=_policy_options(args))
    report = score(config, args.out, progress=not args.quiet, command=" ".join(["vans-sim", *sys.argv[1:]]))
    print(format_table(report))
    print(f"wrote {args.out}/report.json, report.md, success.png" + ("" if args.no_video else ", rollouts.gif"))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vans_sim.compare import compare

    try:
        print(f"wrote {compare(args.runs, args.out)}")
    except FileNotFoundError as e:
        raise ValueError(str(e)) from e
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vans-sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list the tasks with their instruction and success condition")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("record", help="record scripted-expert demonstrations to HDF5 (robomimic layout)",
                       description="Record scripted-expert demonstrations. Re-running the same command "
                       "resumes an interrupted recording.")
    p.add_argument("--tasks", default="all", help=TASKS_HELP)
    p.add_argument("--episodes", type=int, required=True, help="episodes per task")
    p.add_argument("--image-size", type=int, default=64, choices=IMAGE_SIZES, help="camera image side in pixels")
    p.add_argument("--split", default="train", choices=SPLITS, help="initial-state randomization split")
    p.add_argument("--shadows", action="store_true",
                   help="the sun casts shadows onto the desk (a depth cue; 2 to 2.5x the render cost)")
    p.add_argument("--cameras", type=camera_list, default=("desk",), help=CAMERAS_HELP)
    p.add_argument("--seed-start", type=int, default=0, help="episode i of each task uses seed SEED_START + i")
    p.add_argument("--out", required=True, help="output folder; the dataset is OUT/demo.hdf5")
    p.add_argument("--workers", type=int, default=1, help="parallel recording processes")
    p.add_argument("--perturb-fraction", type=float, default=0.2,
                   help="share of episodes recorded with noisy expert actions")
    p.add_argument("--noise-std", type=float, default=0.3, help="action noise of perturbed episodes")
    p.add_argument("--axis-speed-fraction", type=float, default=0.0,
                   help="share of episodes whose expert moves each axis at its own speed (dx, dy, dz times "
                   "factors drawn per episode), so that the axes do not always arrive at once")
    p.add_argument("--min-axis-speed", type=float, default=0.35,
                   help="least factor on an axis in those episodes (each drawn from [MIN_AXIS_SPEED, 1])")
    p.add_argument("--shard-size", type=int, default=20, help="episodes per resumable shard")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("score", help="score a policy: success per task with 95%% intervals",
                       description="Score a policy on vector environments and write report.json, "
                       "report.md, success.png and rollouts.gif.")
    p.add_argument("--policy", required=True,
                   help="policy entry point (expert, random, planner when vans-engine is installed) or module:Class")
    p.add_argument("--tasks", default="all", help=TASKS_HELP)
    p.add_argument("--episodes", type=int, default=100, help="episodes per task")
    p.add_argument("--split", default="heldout", choices=SPLITS, help="initial-state randomization split")
    p.add_argument("--split-override", action="append", default=[], metavar="QUANTITY[,QUANTITY...]=SPLIT",
                   help="draw these randomized quantities from SPLIT instead of --split, to tell which of a "
                   f"held-out scene's differences a policy fails on; quantities: {', '.join(RANGES)} "
                   "(e.g. ee_x,ee_y,ee_z=train: held-out desks, the gripper starting where training starts it)")
    p.add_argument("--seed-start", type=int, default=0, help="episode i of each task uses seed SEED_START + i")
    p.add_argument("--image-size", type=int, default=64, choices=IMAGE_SIZES, help="camera image side in pixels")
    p.add_argument("--shadows", action="store_true",
                   help="the sun casts shadows onto the desk (a depth cue; 2 to 2.5x the render cost); "
                   "score a model with the setting of its training data")
    p.add_argument("--cameras", type=camera_list, default=("desk",),
                   help=CAMERAS_HELP + "; score a model with the cameras of its training data")
    p.add_argument("--num-envs", type=int, default=8, help="environments stepped together")
    p.add_argument("--vector", default="async", choices=("async", "sync"),
                   help="one process per environment (async) or all in this process (sync)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-video", action="store_true", help="skip the rollout grid video")
    p.add_argument("--model", help="model folder, passed to the policy (planner)")
    p.add_argument("--backend", help="inference backend, passed to the policy (planner)")
    p.add_argument("--device", help="device, passed to the policy (planner)")
    p.add_argument("--policy-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra keyword argument for the policy; VALUE is parsed as JSON when it can be")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("compare", help="closed-loop success of several score runs side by side, with exact tests",
                       description="Compare vans-sim score runs: successes per task with 95%% intervals, and "
                       "each run's change from the first with a two-sided exact test (McNemar's on paired "
                       "episodes, Fisher's otherwise). Writes OUT.md, and OUT.png: the runs side by side "
                       "in a bar plot.")
    p.add_argument("runs", nargs="+", metavar="NAME=DIR", help="a vans-sim score --out folder and its name; the "
                   "first is the baseline. NAME=DIR+DIR joins runs scored on other seeds into one")
    p.add_argument("--out", required=True, help="markdown file to write (.md is added)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # bad task names, splits, sizes, datasets: one clear line, no traceback
        print(f"vans-sim {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
