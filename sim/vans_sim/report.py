"""Report pieces shared by scoring and demos: confidence intervals, a bar plot and a rollout grid video."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def blocked_share(episodes: list[dict]) -> float:
    """The share of these per-episode rows' steps that were blocked (``blocked_steps`` over ``steps``)."""
    return sum(e["blocked_steps"] for e in episodes) / max(1, sum(e["steps"] for e in episodes))


def events_reached_text(task_summary: dict) -> str:
    """A task summary's episodes reaching each of its events, in order: "reach 12 → push 11"."""
    return " → ".join(f"{e} {n}" for e, n in zip(task_summary["events"], task_summary["events_reached"]))


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate; well behaved at 0 and at 100%."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def success_bar_plot(runs: dict[str, dict[str, dict]], title: str, path: Path) -> None:
    """Horizontal bars of success per task with their 95% intervals: one bar per run and task, each run
    a colour (``runs`` maps a run's name, shown in the legend when there are several, to its report's
    ``tasks``); the tasks are the first run's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(runs.values())))
    height = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(7, (0.2 + 0.15 * len(runs)) * len(names) + 1.2))
    for k, (run, tasks) in enumerate(runs.items()):
        rows = [tasks.get(n, {"success_rate": 0.0, "ci95": (0.0, 0.0)}) for n in names]
        rates = np.array([r["success_rate"] for r in rows]) * 100
        # clipped: at 0% or 100% the interval's edge equals the rate up to rounding
        lo = np.clip(rates - np.array([r["ci95"][0] for r in rows]) * 100, 0, None)
        hi = np.clip(np.array([r["ci95"][1] for r in rows]) * 100 - rates, 0, None)
        ax.barh(np.arange(len(names)) + (k - (len(runs) - 1) / 2) * height, rates, height=height, xerr=[lo, hi],
                capsize=2, label=run, color=None if len(runs) > 1 else "#4c72b0")
    ax.set_yticks(np.arange(len(names)), names)
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("success (%), with 95% Wilson interval")
    ax.set_title(title)
    if len(runs) > 1:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.fromarray(tile)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, 10], fill=(0, 0, 0))
    draw.text((2, -1), text[: max(4, img.width // 6)], fill=(255, 255, 255))
    return np.asarray(img)


def write_grid_video(clips: dict[str, list[np.ndarray]], path: Path, fps: int = 10, columns: int = 4) -> None:
    """Tile one clip per label into a grid and write it as a GIF (or MP4, by the suffix).

    Shorter clips hold their last frame; each tile carries its label on a black strip.
    """
    import imageio.v3 as iio

    labels = list(clips)
    if not labels:
        return
    length = max(len(c) for c in clips.values())
    h, w = clips[labels[0]][0].shape[:2]
    rows = math.ceil(len(labels) / columns)
    cols = min(columns, len(labels))
    frames = []
    for t in range(length):
        canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
        for k, label in enumerate(labels):
            clip = clips[label]
            tile = _label(clip[min(t, len(clip) - 1)], label)
            r, c = divmod(k, cols)
            canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
        frames.append(canvas)
    path = Path(path)
    if path.suffix == ".gif":
        iio.imwrite(path, np.stack(frames), duration=1000 / fps, loop=0)
    else:  # MP4 through imageio-ffmpeg
        import imageio.v2 as iio2

        iio2.mimwrite(path, frames, fps=fps, macro_block_size=1)
