"""Training curves of several stage runs in one PNG, from their ``log.jsonl``.

    vans-train curves runs/vlm-sft runs/vdm runs/distill runs/idm runs/alignment --out reports/training/curves.png
"""

from __future__ import annotations

from pathlib import Path

from vans_training.trainer import read_log


def plot_curves(runs: list[str | Path], out: str | Path) -> Path:
    """One panel per run: the training loss (log scale) against the step, evaluations marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [Path(r) for r in runs]
    missing = [str(r) for r in runs if not (r / "log.jsonl").is_file()]
    if missing:
        raise FileNotFoundError(f"no log.jsonl in {', '.join(missing)}")
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 2.8), squeeze=False)
    for ax, run in zip(axes[0], runs):
        rows = read_log(run)
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.8)
        ax.set_yscale("log")
        ax.set_title(run.name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        for row in read_log(run, "eval"):
            ax.axvline(row["step"], color="grey", lw=0.4, ls=":")
    axes[0][0].set_ylabel("training loss", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
