"""The closed-loop success table: several policies scored in the simulator on both splits, side by side.

    vans-train closed-loop --tasks all --episodes 20 --splits heldout,train --num-envs 4 \\
        --idm-model runs/idm/final --teacher-model runs/teacher --teacher-steps 20 \\
        --model runs/distilled --steps 2 --backend onnxruntime --out runs/closed_loop

Runs, each scored with :func:`vans_sim.score.score` on every split (same seeds for every run, so all
runs face the same scenes):

* ``expert``: the scripted expert, the ceiling of the simulator's tasks (``--no-expert`` skips it);
* ``random``: uniform random actions, the floor (``--no-random`` skips it);
* ``oracle-video``: the IDM on the expert's true future frames (``--idm-model DIR``), the planner's
  upper bound with a perfect VLM and VDM;
* ``planner-teacher``: the planner with the teacher VDM (``--teacher-model DIR``, ``--teacher-steps N``);
* ``planner``: the planner with the distilled VDM (``--model DIR``, ``--steps N``).

Each run writes its ``vans-sim score`` report to ``OUT/<run>-<split>/`` (``report.json``, ``report.md``,
``success.png``, and ``rollouts.gif`` for the planner and oracle runs) plus the settings it was scored
with; a run whose report exists with the same settings is not scored again, so an interrupted table
resumes where it stopped. Then:

* ``OUT/closed_loop.json``: per run and split, success per task with its 95% Wilson interval, the
  single-task mean and the chained mean (each with the Wilson interval of the pooled episodes);
* ``OUT/closed_loop.md``: the table (rows: tasks, single-task mean, chained mean; columns: run · split;
  cells ``80% [49–94]``) and the command line;
* ``OUT/closed_loop.png``: grouped bars with the 95% intervals as error bars.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vans_sim.cli import CAMERAS_HELP, camera_list
from vans_sim.env import IMAGE_SIZES
from vans_sim.randomization import SPLITS
from vans_sim.report import wilson_interval
from vans_sim.score import ScoreConfig, score
from vans_sim.tasks import get_task, resolve_tasks

SINGLE_MEAN, CHAINED_MEAN = "single-task mean", "chained mean"
SETTINGS_FILE = "closed_loop_settings.json"


@dataclass
class Run:
    """One named policy of the table: ``policy`` is a ``vans_sim.policies`` entry point."""

    name: str
    policy: str
    options: dict = field(default_factory=dict)
    video: bool = False
    per_split_options: bool = False  # the policy needs the split and image size (the oracle's shadows)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``vans-train closed-loop`` flags."""
    g = parser.add_argument_group("runs")
    g.add_argument("--no-expert", action="store_true", help="skip the scripted expert")
    g.add_argument("--no-random", action="store_true", help="skip the random policy")
    g.add_argument("--idm-model", help="IDM folder or planner checkpoint: adds the oracle-video run")
    g.add_argument("--teacher-model", help="planner checkpoint with the teacher VDM: adds the planner-teacher run")
    g.add_argument("--teacher-steps", type=int, help="denoising steps of the teacher (its checkpoint's default otherwise)")
    g.add_argument("--model", help="planner checkpoint with the distilled VDM: adds the planner run")
    g.add_argument("--steps", type=int, help="denoising steps of the distilled VDM (its checkpoint's default otherwise)")
    g.add_argument("--backend", default="onnxruntime", help="planner backend: onnxruntime, torch or tensorrt")
    g.add_argument("--device", default="cpu", help="device of the planner and of the oracle's IDM")
    g = parser.add_argument_group("scoring")
    g.add_argument("--tasks", default="all", help="'all', 'single', 'chained' or comma-separated task names")
    g.add_argument("--episodes", type=int, default=20, help="episodes per task, run and split")
    g.add_argument("--splits", default="heldout,train", help=f"comma-separated splits among {', '.join(SPLITS)}")
    g.add_argument("--num-envs", type=int, default=4, help="environments stepped together")
    g.add_argument("--seed-start", type=int, default=0, help="episode i of each task uses seed SEED_START + i")
    g.add_argument("--image-size", type=int, default=64, choices=IMAGE_SIZES, help="camera image side in pixels")
    g.add_argument("--cameras", type=camera_list, default=("desk",),
                   help=CAMERAS_HELP + "; a planner's or an IDM's own (its model_index.json or config.json)")
    g.add_argument("--vector", default="async", choices=("async", "sync"), help="vector environment kind")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def build_runs(args: argparse.Namespace) -> list[Run]:
    runs = []
    if not args.no_expert:
        runs.append(Run("expert", "expert"))
    if not args.no_random:
        runs.append(Run("random", "random"))
    if args.idm_model:
        runs.append(Run("oracle-video", "oracle-video", {"model": str(args.idm_model), "device": args.device},
                        video=True, per_split_options=True))
    for name, model, steps in (("planner-teacher", args.teacher_model, args.teacher_steps),
                               ("planner", args.model, args.steps)):
        if model:
            options = {"model": str(model), "backend": args.backend, "device": args.device}
            if steps is not None:
                options["steps"] = steps
            runs.append(Run(name, "planner", options, video=True))
    if not runs:
        raise ValueError("nothing to score: every run is switched off")
    return runs


def parse_splits(spec: str) -> list[str]:
    splits = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if not splits or bad:
        raise ValueError(f"--splits must list splits among {SPLITS}, got {spec!r}")
    return splits


def pooled(tasks: dict[str, dict], names: list[str]) -> dict | None:
    """Mean success over ``names`` with the Wilson interval of their pooled episodes (None if empty)."""
    if not names:
        return None
    wins, trials = sum(tasks[n]["successes"] for n in names), sum(tasks[n]["episodes"] for n in names)
    return {"success_rate": float(np.mean([tasks[n]["success_rate"] for n in names])),
            "ci95": list(wilson_interval(wins, trials)), "episodes": trials, "successes": wins}


def score_run(run: Run, split: str, args: argparse.Namespace, tasks: list[str], out: Path, command: str) -> dict:
    """Score one run on one split, or read its report back when it was scored with the same settings."""
    options = dict(run.options)
    if run.per_split_options:
        options.update(split=split, image_size=args.image_size)
    config = ScoreConfig(policy=run.policy, tasks=tasks, episodes=args.episodes, split=split,
                         seed_start=args.seed_start, image_size=args.image_size, cameras=args.cameras,
                         num_envs=args.num_envs,
                         vector=args.vector, video=run.video, policy_options=options)
    # as its JSON file reads back (tuples such as the cameras become lists)
    settings = json.loads(json.dumps({k: v for k, v in asdict(config).items() if k != "vector"}))
    folder = out / f"{run.name}-{split}"
    report_path, settings_path = folder / "report.json", folder / SETTINGS_FILE
    if report_path.is_file() and settings_path.is_file() and json.loads(settings_path.read_text()) == settings:
        return json.loads(report_path.read_text())
    settings_path.unlink(missing_ok=True)  # a half-written folder is scored again
    report = score(config, folder, progress=not args.quiet, command=command)
    settings_path.write_text(json.dumps(settings, indent=2))
    return report


def summarize(report: dict, tasks: list[str], folder: str) -> dict:
    per_task = {t: {k: report["tasks"][t][k] for k in ("success_rate", "ci95", "episodes", "successes")}
                for t in tasks}
    singles = [t for t in tasks if not get_task(t).chained]
    chained = [t for t in tasks if get_task(t).chained]
    return {"policy": report["policy"], "policy_options": report.get("policy_options", {}), "report": folder,
            "tasks": per_task, SINGLE_MEAN: pooled(per_task, singles), CHAINED_MEAN: pooled(per_task, chained)}


def cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    lo, hi = entry["ci95"]
    return f"{entry['success_rate'] * 100:.0f}% [{lo * 100:.0f}–{hi * 100:.0f}]"


def rows_of(table: dict, tasks: list[str]) -> list[tuple[str, list[dict | None]]]:
    columns = [(run, split) for run, by_split in table["runs"].items() for split in by_split]
    rows = [(t, [table["runs"][r][s]["tasks"][t] for r, s in columns]) for t in tasks]
    for name in (SINGLE_MEAN, CHAINED_MEAN):
        rows.append((name, [table["runs"][r][s][name] for r, s in columns]))
    return rows


def write_markdown(table: dict, tasks: list[str], path: Path) -> None:
    columns = [f"{run} · {split}" for run, by_split in table["runs"].items() for split in by_split]
    lines = ["# Closed-loop success", "",
             f"{table['episodes']} episodes per task, run and split, seeds {table['seed_start']}–"
             f"{table['seed_start'] + table['episodes'] - 1}; success with its 95% Wilson interval "
             "(means: the interval of the pooled episodes).", "",
             "| task | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, entries in rows_of(table, tasks):
        label = f"**{name}**" if name in (SINGLE_MEAN, CHAINED_MEAN) else name
        lines.append(f"| {label} | " + " | ".join(cell(e) for e in entries) + " |")
    lines += ["", "Reports (with rollout videos for the planner and oracle runs): "
              + ", ".join(f"[{r}-{s}]({r}-{s}/report.md)" for r, by in table["runs"].items() for s in by), "",
              "![closed-loop success](closed_loop.png)", "", "Command:", "", f"```\n{table['command']}\n```", ""]
    path.write_text("\n".join(lines))


def write_plot(table: dict, tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, entries) for name, entries in rows_of(table, tasks) if any(e is not None for e in entries)]
    columns = [(run, split) for run, by_split in table["runs"].items() for split in by_split]
    colours = {run: f"C{k}" for k, run in enumerate(table["runs"])}  # one colour per run, hatches per split
    hatches = {split: h for split, h in zip(table["splits"], ("", "//", "..", "xx"))}
    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(rows) * len(columns) + 3), 4.5))
    x = np.arange(len(rows))
    for j, (run, split) in enumerate(columns):
        entries = [entries[j] for _, entries in rows]
        rate = np.array([e["success_rate"] * 100 if e else 0.0 for e in entries])
        lo = np.array([e["ci95"][0] * 100 if e else 0.0 for e in entries])
        hi = np.array([e["ci95"][1] * 100 if e else 0.0 for e in entries])
        ax.bar(x - 0.4 + (j + 0.5) * width, rate, width, label=f"{run} · {split}", color=colours[run],
               hatch=hatches.get(split, ""), edgecolor="white",
               yerr=[np.clip(rate - lo, 0, None), np.clip(hi - rate, 0, None)], capsize=2, ecolor="0.3")
    ax.set_xticks(x, [name for name, _ in rows], rotation=35, ha="right")
    ax.set_ylim(0, 102)
    ax.set_ylabel("success (%), with 95% Wilson interval")
    ax.set_title(f"closed-loop success ({table['episodes']} episodes per task)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Score every run on every split, then write closed_loop.json, closed_loop.md and closed_loop.png."""
    tasks, splits, runs = resolve_tasks(args.tasks), parse_splits(args.splits), build_runs(args)
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = getattr(args, "command_line", None) or shlex.join(["vans-train", "closed-loop", *_own_argv()])
    table = {"command": command, "tasks": tasks, "splits": splits, "episodes": args.episodes,
             "seed_start": args.seed_start, "image_size": args.image_size, "runs": {}}
    jobs = [(r, s) for r in runs for s in splits]
    with tqdm(jobs, desc="closed-loop", unit="run", disable=args.quiet) as bar:
        for r, split in bar:
            bar.set_postfix_str(f"{r.name}-{split}")
            report = score_run(r, split, args, tasks, out, command)
            table["runs"].setdefault(r.name, {})[split] = summarize(report, tasks, f"{r.name}-{split}")
    (out / "closed_loop.json").write_text(json.dumps(table, indent=2))
    write_markdown(table, tasks, out / "closed_loop.md")
    write_plot(table, tasks, out / "closed_loop.png")
    if not args.quiet:
        print((out / "closed_loop.md").read_text())
        print(f"wrote {out}/closed_loop.json, closed_loop.md, closed_loop.png")
    return 0


def _own_argv() -> list[str]:
    """This command's own arguments: those after ``closed-loop`` when run as ``vans-train closed-loop``."""
    argv = sys.argv[1:]
    return argv[argv.index("closed-loop") + 1:] if "closed-loop" in argv else argv


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="vans-train closed-loop", description=__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    if argv is not None:
        args.command_line = shlex.join(["vans-train", "closed-loop", *argv])
    try:
        return run(args)
    except ValueError as e:
        print(f"vans-train closed-loop: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
