"""``vans-sim score``: success rate of a policy per task, on gymnasium vector environments.

    vans-sim score --policy expert --tasks all --episodes 100 --split heldout --seed-start 0 --out runs/expert

Episode ``i`` of every task starts from seed ``seed_start + i``, so two policies scored with the
same arguments face the same scenes. Writes ``OUT/report.json``::

    {"policy": str, "split": str, "split_overrides": {QUANTITY: SPLIT},
     "tasks": {TASK: {"episodes": int, "successes": int, "success_rate": float,
                      "ci95": [lo, hi], "mean_steps": float, "blocked_share": float,
                      "events": [str, ...], "events_reached": [int, ...]}},
     "overall": {"success_rate": float, "single_tasks": float, "chained_tasks": float},
     "per_episode": [{"task", "episode_ix", "seed", "success", "steps", "blocked_steps", "events_done"}, ...]}

``events_reached[k]`` counts the episodes that got at least as far as the task's event ``k`` (its
events happen in order: a pick is reach, grasp, lift, ...), so a task that never succeeds still shows
where its episodes stop.

``blocked_share`` (per task, beside ``mean_steps``) is the share of steps in which the policy commanded
a motion of the tool point that did not happen: at least ``BLOCKED_MIN_COMMAND`` of the action's
reach, of which the tool covered less than ``BLOCKED_FRACTION`` (pressed on the desk or an object,
or at the edge of its reach). A policy whose next action depends only on what it sees repeats a
blocked motion for as long as nothing in view changes, so this share tells where its episodes go.

plus ``OUT/report.md``, a bar plot ``OUT/success.png`` and a grid video ``OUT/rollouts.gif`` of the
first episode of every task.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from tqdm import tqdm

from vans_sim.env import RoboDeskEnv
from vans_sim.policies import load_policy_class
from vans_sim.randomization import check_overrides
from vans_sim import scene
from vans_sim.report import blocked_share, events_reached_text, success_bar_plot, wilson_interval, write_grid_video
from vans_sim.scene import EE_MAX_STEP
from vans_sim.tasks import get_task


# A step is blocked when the action asked for at least a fifth of the largest step and the tool point
# moved less than a tenth of what was asked: the expert in free space covers most of its command.
BLOCKED_MIN_COMMAND = 0.2
BLOCKED_FRACTION = 0.1


def blocked_steps(actions: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(N,) bool: which of N environments commanded ``actions`` (N, 4) and did not move their tool point
    from ``before`` to ``after`` (N, 3) by at least ``BLOCKED_FRACTION`` of that command."""
    commanded = np.linalg.norm(actions[:, :3], axis=1)
    moved = np.linalg.norm(after - before, axis=1) / EE_MAX_STEP
    return (commanded >= BLOCKED_MIN_COMMAND) & (moved < BLOCKED_FRACTION * commanded)


@dataclass
class ScoreConfig:
    policy: str
    tasks: list[str]
    episodes: int = 100
    split: str = "heldout"
    split_overrides: dict = field(default_factory=dict)  # {quantity: split}, see RoboDeskEnv
    seed_start: int = 0
    image_size: int = 64
    shadows: bool = False
    cameras: tuple[str, ...] = ("desk",)
    num_envs: int = 8
    vector: str = "async"  # "async" (one process per environment) or "sync"
    video: bool = True
    policy_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for t in self.tasks:
            get_task(t)
        load_policy_class(self.policy)  # an unknown policy fails here, before any work
        self.cameras = scene.check_cameras(self.cameras)
        self.split_overrides = check_overrides(self.split_overrides)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if self.vector not in ("async", "sync"):
            raise ValueError(f"vector must be 'async' or 'sync', got {self.vector!r}")


def _make_vector_env(config: ScoreConfig, task: str, num_envs: int, observe_image: bool):
    make = functools.partial(RoboDeskEnv, task=task, image_size=config.image_size, split=config.split,
                             split_overrides=config.split_overrides, shadows=config.shadows, cameras=config.cameras,
                             observe_image=observe_image, render_mode="rgb_array")
    if config.vector == "async" and num_envs > 1:
        return AsyncVectorEnv([make] * num_envs, context="spawn", autoreset_mode=AutoresetMode.NEXT_STEP)
    return SyncVectorEnv([make] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)


def score_task(config: ScoreConfig, task: str, bar: tqdm | None = None) -> tuple[list[dict], list[np.ndarray]]:
    """Run ``config.episodes`` episodes of ``task``; return per-episode rows and one clip."""
    num_envs = min(config.num_envs, config.episodes)
    policy = load_policy_class(config.policy)(task=task, num_envs=num_envs, seed=config.seed_start,
                                              **config.policy_options)
    vec = _make_vector_env(config, task, num_envs, observe_image=getattr(policy, "needs_image", True))
    rows, clip = [], []
    try:
        for start in range(0, config.episodes, num_envs):
            seeds = [config.seed_start + start + i for i in range(num_envs)]
            obs, _ = vec.reset(seed=seeds)
            policy.reset(np.arange(num_envs))
            live = np.array([start + i < config.episodes for i in range(num_envs)])
            steps, blocked, events = np.zeros(num_envs, int), np.zeros(num_envs, int), np.zeros(num_envs, int)
            success = np.zeros(num_envs, bool)
            filming = config.video and start == 0
            if filming:
                clip.append(vec.call("render")[0])
            while live.any():
                actions, before = policy.act(obs), obs["ee_pos"].copy()
                obs, _, terminated, truncated, info = vec.step(actions)
                steps += live
                blocked += live & blocked_steps(actions, before, obs["ee_pos"])
                events = np.where(live, info["events_done"], events)
                success |= live & terminated
                live &= ~(terminated | truncated)
                if filming:  # the first environment's episode, up to and including its last frame
                    clip.append(vec.call("render")[0])
                    filming = bool(live[0])
            for i in range(num_envs):
                if start + i < config.episodes:
                    rows.append({"task": task, "episode_ix": start + i, "seed": seeds[i],
                                 "success": bool(success[i]), "steps": int(steps[i]),
                                 "blocked_steps": int(blocked[i]), "events_done": int(events[i])})
            if bar is not None:
                bar.update(min(num_envs, config.episodes - start))
    finally:
        vec.close()
    return rows, clip


def task_summary(task: str, rows: list[dict]) -> dict:
    """The report's entry for ``task`` from the per-episode rows of its episodes; without the blocked
    share and the events for rows scored before ``vans-sim score`` counted them."""
    wins = sum(r["success"] for r in rows)
    summary = {"episodes": len(rows), "successes": wins, "success_rate": wins / len(rows),
               "ci95": list(wilson_interval(wins, len(rows))), "mean_steps": float(np.mean([r["steps"] for r in rows]))}
    if all("blocked_steps" in r for r in rows):
        summary["blocked_share"] = blocked_share(rows)
    if all("events_done" in r for r in rows):
        events = get_task(task).events
        summary["events"] = [e.name for e in events]
        summary["events_reached"] = [sum(r["events_done"] > k for r in rows) for k in range(len(events))]
    return summary


def summarize(config: ScoreConfig, rows: list[dict]) -> dict:
    tasks = {task: task_summary(task, [r for r in rows if r["task"] == task]) for task in config.tasks}

    def mean_rate(names: list[str]) -> float | None:
        return float(np.mean([tasks[n]["success_rate"] for n in names])) if names else None

    singles = [t for t in config.tasks if not get_task(t).chained]
    chained = [t for t in config.tasks if get_task(t).chained]
    return {
        "policy": config.policy, "split": config.split, "split_overrides": config.split_overrides,
        "tasks": tasks,
        "overall": {"success_rate": mean_rate(config.tasks), "single_tasks": mean_rate(singles),
                    "chained_tasks": mean_rate(chained)},
        "seed_start": config.seed_start, "episodes_per_task": config.episodes,
        "policy_options": config.policy_options,
        "per_episode": rows,
    }


def split_label(split: str, overrides: dict[str, str]) -> str:
    """``heldout``, or ``heldout (ee_x, ee_y from train)`` when quantities are drawn from another split."""
    by_split = {other: [k for k, v in overrides.items() if v == other] for other in sorted(set(overrides.values()))}
    drawn = "; ".join(f"{', '.join(keys)} from {other}" for other, keys in by_split.items())
    return f"{split} ({drawn})" if drawn else split


def format_table(report: dict) -> str:
    lines = ["| task | episodes | success | 95% CI | mean steps | blocked steps | episodes reaching each event |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, t in report["tasks"].items():
        lo, hi = t["ci95"]
        lines.append(f"| {name} | {t['episodes']} | {t['success_rate']:.1%} | {lo:.1%} – {hi:.1%} | "
                     f"{t['mean_steps']:.1f} | {t['blocked_share']:.0%} | {events_reached_text(t)} |")
    o = report["overall"]
    lines.append(f"| **overall** | | **{o['success_rate']:.1%}** | | | | |")
    return "\n".join(lines)


def score(config: ScoreConfig, out: str | Path, progress: bool = True, command: str | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows, clips = [], {}
    with tqdm(total=config.episodes * len(config.tasks), unit="ep", desc=f"score {config.policy}",
              disable=not progress) as bar:
        for task in config.tasks:
            task_rows, clip = score_task(config, task, bar)
            rows += task_rows
            if clip:
                clips[task] = clip
    report = summarize(config, rows)
    report["seconds"] = time.perf_counter() - started
    report["command"] = command
    (out / "report.json").write_text(json.dumps(report, indent=2))
    split = split_label(config.split, config.split_overrides)
    success_bar_plot({config.policy: report["tasks"]}, f"{config.policy} on {split} "
                     f"({config.episodes} episodes per task)", out / "success.png")
    if clips:
        write_grid_video(clips, out / "rollouts.gif")
    o = report["overall"]
    summary = [f"overall {o['success_rate']:.1%}"]
    if o["single_tasks"] is not None and o["chained_tasks"] is not None:
        summary.append(f"single-event tasks {o['single_tasks']:.1%}, chained tasks {o['chained_tasks']:.1%}")
    (out / "report.md").write_text(
        f"# `{config.policy}` on the {split} split\n\n"
        + (f"Command: `{command}`\n\n" if command else "") +
        f"{config.episodes} episodes per task, seeds {config.seed_start}–{config.seed_start + config.episodes - 1}; "
        f"{'; '.join(summary)}.\n\n{format_table(report)}\n\n"
        f"![success per task](success.png)\n\n" + ("![rollouts](rollouts.gif)\n" if clips else ""))
    return report
