"""Training curves of several stage runs in one PNG, from their ``log.jsonl``.

    vans-train curves runs/vlm-sft runs/vdm runs/distill runs/idm runs/alignment --out reports/training/curves.png

GRPO runs log their rewards instead of a meaningful loss (a GRPO loss hovers around zero by design):

    vans-train curves runs/grpo-vlm runs/grpo-vdm --keys reward,reward_rouge_l,reward_video_sim --smooth 10 \
        --out reports/training/grpo_rewards.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vans_training.trainer import read_log


def moving_average(values: list[float], window: int) -> np.ndarray:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    sums = np.cumsum(np.insert(np.asarray(values, float), 0, 0.0))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (sums[1:] - sums[starts]) / (np.arange(1, len(values) + 1) - starts)


def plot_curves(runs: list[str | Path], out: str | Path, keys: tuple[str, ...] = ("loss",), smooth: int = 1) -> Path:
    """One panel per run: each logged scalar of ``keys`` it has against the step (a moving average
    over ``smooth`` logs), evaluations marked; the loss alone is drawn on a log scale. A key that only
    evaluations log (``psnr``, ``action_mse``) is drawn from them, with markers and no smoothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [Path(r) for r in runs]
    missing = [str(r) for r in runs if not (r / "log.jsonl").is_file()]
    if missing:
        raise FileNotFoundError(f"no log.jsonl in {', '.join(missing)}")
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 2.8), squeeze=False)
    for ax, run in zip(axes[0], runs):
        rows, evaluations = read_log(run), read_log(run, "eval")
        for key in keys:
            logged = [r for r in rows if key in r]
            evaluated = [r for r in evaluations if key in r]
            if logged:
                ax.plot([r["step"] for r in logged], moving_average([r[key] for r in logged], smooth), lw=0.8,
                        label=key)
            elif evaluated:
                ax.plot([r["step"] for r in evaluated], [r[key] for r in evaluated], lw=0.8, marker="o", ms=2.5,
                        label=f"{key} (eval)")
        if keys == ("loss",):
            ax.set_yscale("log")
        elif len(keys) > 1:
            ax.legend(fontsize=6)
        ax.set_title(run.name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        for row in evaluations:
            ax.axvline(row["step"], color="grey", lw=0.4, ls=":")
    axes[0][0].set_ylabel("training loss" if keys == ("loss",) else ", ".join(keys) if len(keys) == 1 else "", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
