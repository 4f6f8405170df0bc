"""Every `vans-sim` command, run as a user runs it: the installed console script in a subprocess."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VANS_SIM = shutil.which("vans-sim", path=str(Path(sys.executable).parent)) or "vans-sim"


def vans_sim(*args, check=True):
    result = subprocess.run([VANS_SIM, *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_tasks_lists_every_task():
    out = vans_sim("tasks").stdout
    for name in ("open_slide", "push_red", "stack", "open_drawer_then_push_red"):
        assert name in out
    data = json.loads(vans_sim("tasks", "--json").stdout)
    assert data["push_red"]["instruction"] == "push the red button"
    assert sum(t["chained"] for t in data.values()) >= 3


def test_help_reads_like_documentation():
    for cmd in ("record", "score"):
        text = vans_sim(cmd, "--help").stdout
        assert "--tasks" in text and "--split" in text and "--out" in text
    assert "McNemar" in vans_sim("compare", "--help").stdout


def test_record_and_read_back(tmp_path):
    out = tmp_path / "data"
    vans_sim("record", "--tasks", "push_green", "--episodes", "2", "--out", str(out), "--quiet")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["successful"] == 2
    again = vans_sim("record", "--tasks", "push_green", "--episodes", "2", "--out", str(out), "--quiet")
    assert '"already_complete": true' in again.stdout


def test_score_writes_the_report(tmp_path):
    out = tmp_path / "score"
    vans_sim("score", "--policy", "expert", "--tasks", "push_blue,open_slide", "--episodes", "3",
             "--split", "heldout", "--num-envs", "2", "--out", str(out), "--quiet")
    report = json.loads((out / "report.json").read_text())
    assert report["policy"] == "expert" and report["split"] == "heldout"
    task = report["tasks"]["push_blue"]
    assert set(task) == {"episodes", "successes", "success_rate", "ci95", "mean_steps", "blocked_share",
                         "events", "events_reached"}
    assert task["episodes"] == 3 and task["success_rate"] == 1.0
    assert task["events"] == ["reach_blue_button", "press_blue_button"] and task["events_reached"] == [3, 3]
    assert all(e["events_done"] == 2 for e in report["per_episode"])
    assert task["blocked_share"] < 0.05  # the expert presses a button, never the desk
    assert 0 <= task["ci95"][0] <= task["success_rate"] <= task["ci95"][1] <= 1
    assert report["overall"]["success_rate"] == 1.0
    for name in ("report.md", "success.png", "rollouts.gif"):
        assert (out / name).stat().st_size > 0
    assert "reach_blue_button 3 → press_blue_button 3" in (out / "report.md").read_text()


def test_score_draws_overridden_quantities_from_the_other_split(tmp_path):
    out = tmp_path / "score"
    vans_sim("score", "--policy", "expert", "--tasks", "push_red", "--episodes", "2", "--split", "heldout",
             "--split-override", "ee_x,ee_y,ee_z=train", "--num-envs", "1", "--no-video", "--out", str(out), "--quiet")
    report = json.loads((out / "report.json").read_text())
    assert report["split_overrides"] == {"ee_x": "train", "ee_y": "train", "ee_z": "train"}
    assert report["tasks"]["push_red"]["successes"] == 2
    assert "heldout (ee_x, ee_y, ee_z from train)" in (out / "report.md").read_text()


def test_random_policy_by_import_path(tmp_path):
    out = tmp_path / "random"
    vans_sim("score", "--policy", "vans_sim.policies:RandomPolicy", "--tasks", "push_red", "--episodes", "3",
             "--num-envs", "2",
             "--vector", "sync", "--no-video", "--out", str(out), "--quiet")
    assert json.loads((out / "report.json").read_text())["tasks"]["push_red"]["episodes"] == 3


@pytest.mark.parametrize("args, message", [
    (["score", "--policy", "expert", "--tasks", "fly_away", "--out", "x"], "unknown task 'fly_away'"),
    (["score", "--policy", "teleport", "--tasks", "push_red", "--out", "x"], "unknown policy 'teleport'"),
    (["record", "--tasks", "push_red", "--episodes", "0", "--out", "x"], "episodes must be >= 1"),
    (["score", "--policy", "expert", "--tasks", "push_red", "--split-override", "ee_x", "--out", "x"],
     "--split-override takes QUANTITY[,QUANTITY...]=SPLIT"),
    (["score", "--policy", "expert", "--tasks", "push_red", "--split-override", "gravity=train", "--out", "x"],
     "unknown randomized quantity 'gravity'"),
])
def test_bad_input_gets_one_clear_line(args, message, tmp_path):
    result = vans_sim(*[str(tmp_path / "x") if a == "x" else a for a in args], check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()  # nothing written for a command that failed its checks


def test_bad_image_size_is_rejected_by_the_parser(tmp_path):
    result = vans_sim("record", "--episodes", "1", "--image-size", "100", "--out", str(tmp_path), check=False)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_corrupt_dataset_on_resume_is_named(tmp_path):
    out = tmp_path / "data"
    vans_sim("record", "--tasks", "push_red", "--episodes", "1", "--out", str(out), "--quiet")
    (out / "demo.hdf5").write_bytes(b"\x00" * 100)
    result = vans_sim("record", "--tasks", "push_red", "--episodes", "1", "--out", str(out), check=False)
    assert result.returncode == 2 and "demo.hdf5" in result.stderr


def test_compare_pairs_runs_on_the_same_episodes(tmp_path):
    for policy in ("expert", "random"):
        vans_sim("score", "--policy", policy, "--tasks", "push_red", "--episodes", "3", "--num-envs", "1",
                 "--vector", "sync", "--no-video", "--out", str(tmp_path / policy), "--quiet")
    vans_sim("score", "--policy", "random", "--tasks", "push_red", "--episodes", "3", "--seed-start", "50",
             "--num-envs", "1", "--vector", "sync", "--no-video", "--out", str(tmp_path / "random-other-seeds"), "--quiet")
    out = vans_sim("compare", f"expert={tmp_path / 'expert'}", f"random={tmp_path / 'random'}",
                   f"other seeds={tmp_path / 'random-other-seeds'}", "--out", str(tmp_path / "table")).stdout
    overall = next(line for line in out.splitlines() if line.startswith("| **overall**"))
    # the same seeds: McNemar's test on the three episodes only the expert solved
    assert "3/3, 100%" in overall and "-3 (+0/-3 paired, p = 0.25)" in overall
    assert "unpaired, Fisher p = 0.10" in overall
    written = (tmp_path / "table.md").read_text()
    assert overall in written and "vans-sim score --policy random" in written
    # the runs side by side in a plot, shown in the table's file
    assert (tmp_path / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "(table.png)" in written
    # the blocked-steps table: the expert never pushes against anything, and every run has a cell
    blocked = written.split("Blocked steps")[1]
    blocked_overall = next(line for line in blocked.splitlines() if line.startswith("| **overall**"))
    cells = [c.strip() for c in blocked_overall.strip("|").split("|")[1:]]
    assert cells[0] == "0%" and all(c.endswith("%") for c in cells)
    # the events table: the expert reaches and presses the button in all three episodes
    events = written.split("Episodes reaching each event")[1]
    expert_events = next(line for line in events.splitlines() if line.startswith("| push_red"))
    assert expert_events.split("|")[2].strip() == "reach_red_button 3 → press_red_button 3"
    assert "**overall**" not in events
    # runs on other seeds joined into one: six episodes, their events summed
    joined = f"{tmp_path / 'random'}+{tmp_path / 'random-other-seeds'}"
    out = vans_sim("compare", f"expert={tmp_path / 'expert'}", f"random={joined}", "--out", str(tmp_path / "t2")).stdout
    random_reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in ("random", "random-other-seeds")]
    wins = sum(r["tasks"]["push_red"]["successes"] for r in random_reports)
    overall = next(line for line in out.splitlines() if line.startswith("| **overall**"))
    assert f"| {wins}/6, " in overall and "unpaired" in overall
    reached = [sum(r["tasks"]["push_red"]["events_reached"][i] for r in random_reports) for i in range(2)]
    assert f"reach_red_button {reached[0]} → press_red_button {reached[1]}" in out
    result = vans_sim("compare", f"expert={tmp_path / 'expert'}", f"twice={tmp_path / 'random'}+{tmp_path / 'random'}",
                      "--out", str(tmp_path / "t3"), check=False)
    assert result.returncode == 2 and "push_red seed 0 is scored twice" in result.stderr


def test_compare_leaves_blocked_share_empty_for_reports_that_lack_it():
    from vans_sim.compare import blocked_share_cell

    report = {"per_episode": [{"task": "push_red", "seed": 0, "success": True, "steps": 40, "blocked_steps": 10},
                              {"task": "stack", "seed": 0, "success": False, "steps": 60}]}
    assert blocked_share_cell(report, "push_red") == "25%"
    assert blocked_share_cell(report, "stack") == "" and blocked_share_cell(report, None) == ""
    from vans_sim.compare import events_reached_cell

    assert events_reached_cell({"tasks": {"stack": {"episodes": 2}}}, "stack") == ""
    assert events_reached_cell({"tasks": {}}, "stack") == "" and events_reached_cell({"tasks": {}}, None) == ""


def test_compare_exact_tests_match_known_values():
    from vans_sim.compare import binomial_two_sided, fisher_two_sided

    # reference values from scipy.stats.binomtest and fisher_exact (two-sided)
    assert binomial_two_sided(0, 5) == pytest.approx(0.0625)
    assert binomial_two_sided(1, 7) == pytest.approx(0.125)
    assert binomial_two_sided(0, 0) == 1.0
    assert fisher_two_sided(9, 120, 2, 120) == pytest.approx(0.059415687498192093)
    assert fisher_two_sided(3, 4, 1, 4) == pytest.approx(0.48571428571428565)


def test_compare_refuses_a_missing_run_in_one_line(tmp_path):
    result = vans_sim("compare", f"a={tmp_path / 'none'}", f"b={tmp_path / 'none2'}", "--out", str(tmp_path / "t"),
                      check=False)
    assert result.returncode == 2 and "report.json: not found" in result.stderr and "Traceback" not in result.stderr
    result = vans_sim("compare", str(tmp_path), "--out", str(tmp_path / "t"), check=False)
    assert result.returncode == 2 and "NAME=DIR" in result.stderr
