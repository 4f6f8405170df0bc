"""Side-by-side next-event table of several evaluated checkpoints (VANS Table 1 and its ablation).

    vans-train compare --run SFT=runs/evals/sft --run "stage 1"=runs/evals/grpo-s1 \\
        --out reports/grpo/ablation

Each ``--run NAME=DIR`` names a ``vans-train eval`` output (its ``eval.json``). Writes ``OUT.md`` (the
table, every metric, with each row's change from the first) and ``OUT.png`` (one panel per metric).
Rows must have been evaluated on the same data, split, samples and seed: the table refuses otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from vans_training.evaluate import METRICS, SIM_METRICS

COLUMNS = METRICS + ("rouge_l_multi_ref", "event_accuracy") + SIM_METRICS
SAME = ("data", "split", "samples")


def load_runs(runs: list[str]) -> dict[str, dict]:
    """``["NAME=DIR", ...]`` -> {name: eval.json contents}, checked to be comparable."""
    results = {}
    for item in runs:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--run must look like NAME=DIR, got {item!r}")
        path = Path(folder) / "eval.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run vans-train eval --out {folder} first)")
        results[name] = json.loads(path.read_text())
    first = next(iter(results.values()))
    for name, result in results.items():
        differing = [key for key in SAME if result.get(key) != first.get(key)]
        if differing:
            raise ValueError(f"{name} was evaluated with a different {', '.join(differing)} than the first row")
    return results


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
    out.with_suffix(".md").write_text(
        f"# Next-event comparison\n\n{first['samples']} samples of `{first['data']}` (split {first['split']}); "
        f"in brackets, the change from the first row.\n\n{table}\n![comparison]({out.name}.png)\n")
    plot_comparison(results, out.with_suffix(".png"))
    print(table)
    return out.with_suffix(".md")
