"""Report pieces shared by scoring and demos: confidence intervals, a bar plot and a rollout grid video."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def blocked_share(episodes: list[dict]) -> float:
    """The share of these per-episode rows' steps that were blocked (``blocked_steps`` over ``steps``)."""
    return sum(e["blocked_steps"] for e in episodes) / max(1, sum(e["steps"] for e in episodes))


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate; well behaved at 0 and at 100%."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def success_bar_plot(tasks: dict[str, dict], title: str, path: Path) -> None:
    """Horizontal bars of success per task with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(tasks)
    rates = np.array([tasks[n]["success_rate"] for n in names]) * 100
    # clipped: at 0% or 100% the interval's edge equals the rate up to rounding
    lo = np.clip(rates - np.array([tasks[n]["ci95"][0] for n in names]) * 100, 0, None)
    hi = np.clip(np.array([tasks[n]["ci95"][1] for n in names]) * 100 - rates, 0, None)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ax.barh(names, rates, xerr=[lo, hi], color="#4c72b0", capsize=3)
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("success (%), with 95% Wilson interval")
    ax.set_title(title)
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
