"""The `vans` CLI and the planner policy, run as users run them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vans_engine.testing import tiny_checkpoint
from vans_engine.video_io import read_frames, write_video

BIN = Path(sys.executable).parent


def run(cmd, *args, check=True):
    result = subprocess.run([shutil.which(cmd, path=str(BIN)) or cmd, *args], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="module")
def recorded_clip(tmp_path_factory):
    """A clip of a real episode, recorded by `vans-sim record` and written as MP4."""
    from vans_sim.dataset import DemoDataset

    out = tmp_path_factory.mktemp("rec")
    run("vans-sim", "record", "--tasks", "push_red", "--episodes", "1", "--out", str(out / "data"), "--quiet")
    with DemoDataset(out / "data") as ds:
        frames = ds.episode(0).images[:6]
    write_video(out / "clip.mp4", frames)
    return out / "clip.mp4"


def test_predict_on_a_recorded_clip(checkpoint, recorded_clip, tmp_path):
    out = tmp_path / "answer.mp4"
    result = run("vans", "predict", "--model", str(checkpoint), "--video", str(recorded_clip),
                 "--instruction", "push the red button", "--out", str(out), "--samples", "2", "--seed", "0")
    assert "caption[0]:" in result.stdout and "caption[1]:" in result.stdout
    video = read_frames(out)
    assert video.shape == (4 + 8, 64, 64 * 3, 3)  # context | future 1 | future 2
    actions = json.loads((tmp_path / "actions.json").read_text())
    assert len(actions["plans"]) == 2 and np.array(actions["plans"][0]["actions"]).shape == (8, 4)
    assert actions["trained"] is False


def test_predict_with_proprioception(recorded_clip, tmp_path):
    """A checkpoint whose IDM reads proprioception: --state is required, and it changes the actions."""
    checkpoint = tiny_checkpoint(tmp_path / "state", idm_state=True)
    common = ["predict", "--model", str(checkpoint), "--video", str(recorded_clip), "--instruction",
              "push the red button", "--seed", "0"]
    missing = run("vans", *common, "--out", str(tmp_path / "a.mp4"), check=False)
    assert missing.returncode == 2 and "--state" in missing.stderr
    plans = []
    for k, state in enumerate((["0.1", "-0.1", "0.6", "1.0"], ["-0.3", "0.1", "0.45", "0.0"])):
        (tmp_path / f"{k}").mkdir()
        run("vans", *common, "--state", *state, "--out", str(tmp_path / f"{k}" / "answer.mp4"))
        plans.append(np.array(json.loads((tmp_path / f"{k}" / "actions.json").read_text())["plans"][0]["actions"]))
    assert np.abs(plans[0] - plans[1]).max() > 1e-3


def test_predict_from_a_folder_of_frames(checkpoint, recorded_clip, tmp_path):
    import imageio.v2 as iio

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(read_frames(recorded_clip)):
        iio.imwrite(folder / f"{i:03d}.png", frame)
    run("vans", "predict", "--model", str(checkpoint), "--video", str(folder), "--instruction", "open the drawer",
        "--out", str(tmp_path / "answer.gif"), "--backend", "torch")
    assert (tmp_path / "answer.gif").exists()


def test_export_and_bench(checkpoint, tmp_path):
    run("vans", "export", "--model", str(checkpoint), "--format", "onnx")
    assert (checkpoint / "exported" / "vdm" / "model.onnx").exists()
    run("vans", "bench", "--model", str(checkpoint), "--repeats", "3", "--batch-sizes", "1", "2",
        "--json", str(tmp_path / "bench.json"))
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert {"backend", "device", "plan_ms", "plans_per_s_batch1"} <= set(bench)
    assert bench["plan_ms"]["p50"] > 0 and "p95" in bench["plan_ms"]


def test_tensorrt_export_says_why_it_cannot_run(checkpoint):
    from vans_engine.backends import tensorrt_available

    if tensorrt_available()[0]:
        pytest.skip("TensorRT is available here")
    result = run("vans", "export", "--model", str(checkpoint), "--format", "tensorrt", check=False)
    assert result.returncode != 0 and "TensorRT" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["predict", "--model", "/nonexistent", "--video", "x.mp4", "--instruction", "go", "--out", "a.mp4"], "not found"),
    (["bench", "--model", "/nonexistent"], "not found"),
])
def test_bad_input_is_one_clear_line(args, message):
    result = run("vans", *args, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_missing_video_is_named(checkpoint, tmp_path):
    result = run("vans", "predict", "--model", str(checkpoint), "--video", str(tmp_path / "none.mp4"),
                 "--instruction", "go", "--out", str(tmp_path / "a.mp4"), check=False)
    assert result.returncode == 2 and "none.mp4" in result.stderr


def test_vans_sim_scores_the_planner(checkpoint, tmp_path):
    """`vans-sim score --policy planner` end to end; an untrained planner is expected to fail the tasks."""
    out = tmp_path / "score"
    run("vans-sim", "score", "--policy", "planner", "--model", str(checkpoint), "--backend", "onnxruntime",
        "--tasks", "push_red", "--episodes", "2", "--num-envs", "2", "--vector", "sync",
        "--policy-option", "replan_every=8", "--policy-option", "reuse_caption=2", "--out", str(out), "--quiet")
    report = json.loads((out / "report.json").read_text())
    assert report["policy"] == "planner" and report["tasks"]["push_red"]["episodes"] == 2
    assert (out / "rollouts.gif").exists()
