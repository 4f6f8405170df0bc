"""Side-by-side next-event table of several evaluated checkpoints (VANS Table 1 and its ablation).

    vans-train compare --run SFT=runs/evals/sft --run "stage 1"=runs/evals/grpo-s1 \\
        --out reports/grpo/ablation

Each ``--run NAME=DIR`` names a ``vans-train eval`` output (its ``eval.json``). Writes ``OUT.md`` (the
table, every metric, with each row's change from the first) and ``OUT.png`` (one panel per metric).
Rows must have been evaluated on the same data, split, samples and seed: the table refuses otherwise.
Two recordings of the same episodes that differ only in their cameras (``vans-sim record --cameras``)
count as the same data: the samples are the same moments of the same episodes, so a one-camera and a
two-camera planner pair up sample by sample.
When every run also has its per-sample scores (``samples.jsonl``), a second table gives each row's
change from the first with a 95% paired bootstrap interval: the samples are the same, so the
difference is resolved far more finely than the two rows' own spreads suggest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from vans_sim.compare import load_named_runs, named_run
from vans_sim.dataset import RECORD_ARGS

from vans_training.evaluate import METRICS, SAMPLES_FILE, SIM_METRICS

COLUMNS = METRICS + ("rouge_l_multi_ref", "event_accuracy") + SIM_METRICS
SAME = ("data", "split", "samples")
PAIRED = ("rouge_l", "event_correct", "psnr", "ssim", "alignment", "plan_event_reached")
BOOTSTRAP_RESAMPLES = 2000


def recorded_episodes(data: str) -> dict | None:
    """What a ``vans-sim record`` folder recorded, its cameras left out; None where it is not readable
    (a folder moved or deleted since the evaluation)."""
    args = Path(data) / RECORD_ARGS
    if not args.is_file():
        return None
    return {key: value for key, value in json.loads(args.read_text()).items() if key != "cameras"}


def load_runs(runs: list[str]) -> dict[str, dict]:
    """``["NAME=DIR", ...]`` -> {name: eval.json contents}, checked to be comparable."""
    results = load_named_runs(runs, "eval.json", "vans-train eval")
    first = next(iter(results.values()))
    first_episodes = recorded_episodes(first["data"])
    for name, result in results.items():
        differing = [key for key in SAME if result.get(key) != first.get(key)]
        if differing == ["data"] and first_episodes is not None and recorded_episodes(result["data"]) == first_episodes:
            continue
        if differing:
            raise ValueError(f"{name} was evaluated with a different {', '.join(differing)} than the first row")
    return results


def load_sample_scores(runs: list[str]) -> dict[str, dict[str, np.ndarray]] | None:
    """{name: {score: (N,) per-sample values}} from each run's ``samples.jsonl``, ordered by sample
    index; None when a run has none. Raises when the runs scored different samples."""
    scores, indices = {}, None
    for item in runs:
        name, folder = named_run(item)
        path = folder / SAMPLES_FILE
        if not path.is_file():
            return None
        rows = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["index"])
        if indices is None:
            indices = [r["index"] for r in rows]
        elif [r["index"] for r in rows] != indices:
            raise ValueError(f"{name}: {path} holds other samples than the first run's")
        scores[name] = {key: np.array([r[key] for r in rows], dtype=np.float64) for key in PAIRED}
    return scores


def paired_differences(base: np.ndarray, other: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``other - base`` over paired samples and its 95% bootstrap interval."""
    difference = other - base
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), (BOOTSTRAP_RESAMPLES, len(difference)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(difference.mean()), float(low), float(high)


def paired_table(scores: dict[str, dict[str, np.ndarray]]) -> str:
    """Each row's change from the first, per sample-level score, with its 95% paired interval."""
    names = list(scores)
    header = "| change from " + names[0] + " | " + " | ".join(PAIRED) + " |\n|---|" + "---:|" * len(PAIRED) + "\n"
    rows = []
    for name in names[1:]:
        cells = []
        for key in PAIRED:
            mean, low, high = paired_differences(scores[names[0]][key], scores[name][key])
            marker = "**" if low > 0 or high < 0 else ""  # the interval excludes no change
            cells.append(f"{marker}{mean:+.3f} [{low:+.3f}, {high:+.3f}]{marker}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows) + "\n"


def comparison_table(results: dict[str, dict]) -> str:
    header = "| | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS) + "\n"
    base = next(iter(results.values()))
    rows = []
    for i, (name, result) in enumerate(results.items()):
        cells = []
        for column in COLUMNS:
            value = result[column]
            cells.append(f"{value:.3f}" if i == 0 else f"{value:.3f} ({value - base[column]:+.3f})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows) + "\n"


def plot_comparison(results: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, (len(COLUMNS) + 1) // 2, figsize=(2.3 * ((len(COLUMNS) + 1) // 2), 5.2))
    for ax, column in zip(axes.flat, COLUMNS):
        values = [results[n][column] for n in names]
        ax.bar(range(len(names)), values, color=[f"C{i}" for i in range(len(names))])
        low, high = min(values), max(values)
        pad = max(1e-3, 0.5 * (high - low))
        ax.set_ylim(low - pad, high + pad)  # the differences are what the table is about
        ax.set_title(column, fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
    for ax in list(axes.flat)[len(COLUMNS):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def compare(runs: list[str], out: str | Path) -> Path:
    """Write ``OUT.md`` and ``OUT.png``; returns the markdown file."""
    results = load_runs(runs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))
    table = comparison_table(results)
    sample_scores = load_sample_scores(runs) if len(runs) > 1 else None
    if sample_scores is not None:
        table += ("\nPaired over the same samples: the mean change from the first row and its 95% bootstrap "
                  f"interval ({BOOTSTRAP_RESAMPLES} resamples; bold where it excludes 0; `event_correct` is "
                  f"the event accuracy).\n\n{paired_table(sample_scores)}")
    others = sorted({result["data"] for result in results.values()} - {first["data"]})
    recordings = f"`{first['data']}`" + (
        f" (and the same episodes recorded with other cameras: {', '.join(f'`{d}`' for d in others)})" if others else "")
    out.with_suffix(".md").write_text(
        f"# Next-event comparison\n\n{first['samples']} samples of {recordings} (split {first['split']}); "
        f"in brackets, the change from the first row.\n\n{table}\n![comparison]({out.name}.png)\n")
    plot_comparison(results, out.with_suffix(".png"))
    print(table)
    return out.with_suffix(".md")
