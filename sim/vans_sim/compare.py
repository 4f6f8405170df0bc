"""``vans-sim compare``: the closed-loop success of several ``vans-sim score`` runs side by side.

    vans-sim compare SFT=runs/cl/sft GRPO=runs/cl/grpo --out reports/grpo/closed_loop_compare

Each ``NAME=DIR`` names a ``vans-sim score --out`` folder (its ``report.json``);
``NAME=DIR+DIR+...`` joins runs of the same policy on other seeds into one (seeds 0-11 and 12-23
scored apart, say), each episode counted once. The table has one row per task and an overall row:
each run's successes out of its episodes, then each later run's change from the first with a
two-sided exact test. Runs that scored the same episodes (the same tasks and seeds) are paired:
McNemar's exact test counts only the episodes whose outcome differs, so the spread in how hard the
seeds are does not blur the comparison. Runs that did not are compared with Fisher's exact test. At
120 episodes a run, a change of a few successes is what chance alone gives: the test says how many.
A second table gives each run's share of blocked steps per task (see ``vans_sim.score``): where a
policy's failed episodes stall; a third, how many of each run's episodes reached each of a task's
events: how far its failures got.
"""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

from vans_sim.report import blocked_share, events_reached_text, success_bar_plot, wilson_interval
from vans_sim.score import task_summary

RUN_JOINER = "+"  # NAME=DIR+DIR joins the runs in those folders


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips."""
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def fisher_two_sided(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float:
    """Fisher's exact test on a 2x2 table: the probability, with the margins fixed, of a table no more
    likely than the observed one."""
    total, successes = trials_a + trials_b, successes_a + successes_b

    def probability(k: int) -> float:  # k successes in a's row
        return comb(trials_a, k) * comb(trials_b, successes - k) / comb(total, successes)

    observed = probability(successes_a)
    low, high = max(0, successes - trials_b), min(trials_a, successes)
    # the relative tolerance keeps tables as likely as the observed one from falling out by rounding
    return min(1.0, sum(p for p in map(probability, range(low, high + 1)) if p <= observed * (1 + 1e-9)))


def named_run(item: str) -> tuple[str, Path]:
    """``"NAME=DIR"`` -> (name, folder)."""
    name, sep, folder = item.partition("=")
    if not sep or not name or not folder:
        raise ValueError(f"each run must look like NAME=DIR, got {item!r}")
    return name, Path(folder)


def load_named_runs(runs: list[str], filename: str, command: str) -> dict[str, dict]:
    """``["NAME=DIR", ...]`` -> {name: the JSON file ``DIR/filename``}; ``command`` is what writes it."""
    results = {}
    for item in runs:
        name, folder = named_run(item)
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run {command} --out {folder} first)")
        if name in results:
            raise ValueError(f"two runs are named {name!r}")
        results[name] = json.loads(path.read_text())
    return results


def joined_reports(name: str, reports: list[dict]) -> dict:
    """One report of several runs' episodes, summarised per task as ``vans-sim score`` summarises its
    own, with their commands listed. Each (task, seed) may be scored by one of them only."""
    episodes = [e for report in reports for e in report["per_episode"]]
    seen = set()
    for e in episodes:
        if (e["task"], e["seed"]) in seen:
            raise ValueError(f"run {name!r}: {e['task']} seed {e['seed']} is scored twice in the runs it joins")
        seen.add((e["task"], e["seed"]))
    tasks = {task: task_summary(task, [e for e in episodes if e["task"] == task])
             for task in dict.fromkeys(e["task"] for e in episodes)}
    return {"tasks": tasks, "per_episode": episodes,
            "command": "; ".join(report.get("command", "") for report in reports)}


def load_runs(runs: list[str]) -> dict[str, dict]:
    """``["NAME=DIR", "NAME=DIR+DIR", ...]`` -> {name: report.json contents, or the joined reports of
    several folders}, at least two."""
    reports = {}
    for item in runs:
        name, folder = named_run(item)
        if name in reports:
            raise ValueError(f"two runs are named {name!r}")
        parts = [load_named_runs([f"{name}={part}"], "report.json", "vans-sim score")[name]
                 for part in str(folder).split(RUN_JOINER)]
        reports[name] = parts[0] if len(parts) == 1 else joined_reports(name, parts)
    if len(reports) < 2:
        raise ValueError("compare needs at least two runs")
    return reports


def episode_outcomes(report: dict, task: str | None = None) -> dict[tuple[str, int], bool]:
    """{(task, seed): success} of a report's episodes, of one task or all of them."""
    return {(e["task"], e["seed"]): bool(e["success"]) for e in report["per_episode"] if task in (None, e["task"])}


def change(base: dict[tuple[str, int], bool], other: dict[tuple[str, int], bool]) -> str:
    """``other``'s change in successes from ``base`` and the two-sided exact p-value, as a table cell."""
    gained = sum(other.values()) - sum(base.values())
    if base.keys() == other.keys():
        better = sum(other[k] and not base[k] for k in base)
        worse = sum(base[k] and not other[k] for k in base)
        return f"{gained:+d} (+{better}/-{worse} paired, p = {binomial_two_sided(better, better + worse):.2f})"
    p = fisher_two_sided(sum(other.values()), len(other), sum(base.values()), len(base))
    return f"{gained:+d} (unpaired, Fisher p = {p:.2f})"


def successes_cell(outcomes: dict[tuple[str, int], bool]) -> str:
    wins, trials = sum(outcomes.values()), len(outcomes)
    low, high = wilson_interval(wins, trials)
    return f"{wins}/{trials}, {100 * wins / trials:.0f}% [{100 * low:.0f}–{100 * high:.0f}]"


def scored_tasks(reports: dict[str, dict]) -> list[str]:
    """The tasks any of the reports scored, in the order they first appear."""
    return list(dict.fromkeys(t for report in reports.values() for t in report["tasks"]))


def comparison_table(reports: dict[str, dict]) -> str:
    names = list(reports)
    tasks = scored_tasks(reports)
    header = ("| task | " + " | ".join(names) + " | " + " | ".join(f"{n} vs {names[0]}" for n in names[1:]) + " |\n"
              "|---|" + "---:|" * (2 * len(names) - 1) + "\n")
    rows = []
    for task in tasks + [None]:
        outcomes = [episode_outcomes(reports[n], task) for n in names]
        if not all(outcomes):  # a task some run did not score: its cells stay empty
            cells = [successes_cell(o) if o else "" for o in outcomes] + [""] * (len(names) - 1)
        else:
            cells = [successes_cell(o) for o in outcomes] + [change(outcomes[0], o) for o in outcomes[1:]]
        label = "**overall**" if task is None else task
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows) + "\n"


def blocked_share_cell(report: dict, task: str | None) -> str:
    """The share of a report's steps (of one task or all) that were blocked; empty for reports written
    before ``vans-sim score`` counted them."""
    episodes = [e for e in report["per_episode"] if task in (None, e["task"])]
    if not episodes or any("blocked_steps" not in e for e in episodes):
        return ""
    return f"{blocked_share(episodes):.0%}"


def events_reached_cell(report: dict, task: str | None) -> str:
    """How many of a report's episodes of ``task`` reached each of its events; empty for the overall
    row, a task the report did not score, and reports written before ``vans-sim score`` counted them."""
    summary = report["tasks"].get(task) if task is not None else None
    return events_reached_text(summary) if summary and "events_reached" in summary else ""


def per_task_table(reports: dict[str, dict], cell, overall: bool = True) -> str:
    """One row per scored task (and an overall row), one ``cell(report, task)`` column per run."""
    names = list(reports)
    tasks = scored_tasks(reports) + ([None] if overall else [])
    header = "| task | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names) + "\n"
    rows = [f"| {'**overall**' if task is None else task} | " + " | ".join(cell(reports[n], task) for n in names)
            + " |" for task in tasks]
    return header + "\n".join(rows) + "\n"


def compare(runs: list[str], out: str | Path) -> Path:
    """Write ``OUT.md`` (the table and each run's command) and ``OUT.png`` (success per task, the runs side
    by side); returns ``OUT.md``."""
    reports = load_runs(runs)
    table = comparison_table(reports)
    blocked = per_task_table(reports, blocked_share_cell)
    events = per_task_table(reports, events_reached_cell, overall=False)
    commands = "\n".join(f"- {name}: `{report.get('command', '')}`" for name, report in reports.items())
    out = Path(out).with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    success_bar_plot({name: report["tasks"] for name, report in reports.items()}, "success per task",
                     out.with_suffix(".png"))
    out.write_text(f"# Closed-loop comparison\n\nSuccesses with 95% Wilson intervals; in the last columns each "
                   f"run's change from the first, with a two-sided exact test (McNemar's on the episodes whose "
                   f"outcome differs where the runs scored the same episodes, Fisher's otherwise).\n\n{table}\n"
                   f"Blocked steps: the share of each run's steps that commanded a motion the tool did not make "
                   f"(pressed on the desk or an object, or at the edge of its reach).\n\n{blocked}\n"
                   f"Episodes reaching each event of their task, in order: how far the failures got.\n\n{events}\n"
                   f"![success per task, the runs side by side]({out.with_suffix('.png').name})\n\n{commands}\n")
    print(table)
    print(blocked)
    print(events)
    return out
