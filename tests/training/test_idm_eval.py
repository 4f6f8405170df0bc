"""``vans-train idm-eval``: the IDM alone on a recording's true frames, error per action component."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vans_training.cli import main
from vans_training.data import NextEventData, to_model_frames


@pytest.fixture(scope="module")
def idm_folder(tmp_path_factory):
    from vans_engine.models.idm import InverseDynamicsModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("idm")
    InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, pooling="mean_max").save_pretrained(folder)
    return folder


def test_scores_are_the_chunk_errors_per_component(idm_folder, tiny_dataset, tmp_path, capsys):
    """The RMSE per component and the chunk MSE recomputed by hand from the IDM's chunks on every
    anchor, with the steps past an episode's end left out; one row per task."""
    from vans_engine.models.idm import InverseDynamicsModel

    assert main(["idm-eval", "--model", str(idm_folder), "--data", str(tiny_dataset), "--anchor-every", "6",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    report = json.loads((tmp_path / "eval" / "idm_eval.json").read_text())
    assert "| **all** |" in capsys.readouterr().out
    assert set(report["per_task"]) == {"push_red", "open_drawer"}

    data = NextEventData(tiny_dataset, "all", context_frames=1, future_frames=8, anchor_every=6, successful_only=False)
    batch = data.batch(np.arange(len(data)))
    idm = InverseDynamicsModel.from_pretrained(idm_folder).eval()
    with torch.no_grad():
        chunk = idm(to_model_frames(np.concatenate([batch.context, batch.future], axis=1))).numpy()
    mask = batch.action_mask
    assert not mask.all()  # some anchors run past their episode's end, and those steps are not scored
    error = (chunk - batch.actions)[mask]
    overall = report["overall"]
    assert overall["samples"] == len(data) == sum(t["samples"] for t in report["per_task"].values())
    for c, name in enumerate(("x", "y", "z", "gripper")):
        assert overall[f"rmse_{name}"] == pytest.approx(float(np.sqrt((error[:, c] ** 2).mean())), rel=1e-4)
    assert overall["chunk_mse"] == pytest.approx(float((error ** 2).mean()), rel=1e-4)
    first = (chunk - batch.actions)[:, :4][mask[:, :4]]
    assert overall["first_actions_mse"] == pytest.approx(float((first ** 2).mean()), rel=1e-4)
    sign = ((chunk[..., 3] > 0) == (batch.actions[..., 3] > 0))[mask].mean()
    assert overall["gripper_sign_accuracy"] == pytest.approx(float(sign), rel=1e-6)


def test_the_recording_must_show_the_idms_cameras(tiny_dataset, tmp_path, capsys):
    from vans_engine.models.idm import InverseDynamicsModel

    InverseDynamicsModel(channels=(16, 16, 16, 16), hidden_dim=32, cameras=("desk", "side")).save_pretrained(
        tmp_path / "two")
    assert main(["idm-eval", "--model", str(tmp_path / "two"), "--data", str(tiny_dataset),
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 2
    assert "reads 64-pixel views of ['desk', 'side']" in capsys.readouterr().err


def test_the_shipped_two_camera_idm_reads_depth_the_desk_camera_misses(tmp_path):
    """models/idm-desk-side-64 verifies and loads as an IDM of both views; on held-out drawer episodes
    (the task whose motion runs most along the desk camera's line of sight) its dy error is well under
    the shipped one-camera IDM's (models/idm-desk-64) on the desk view of the same episodes."""
    import subprocess
    import sys
    from pathlib import Path

    from vans_engine.checkpoint import verify_checkpoint
    from vans_training.idm_eval import evaluate_idm
    from vans_training.policies import load_idm

    models = Path(__file__).resolve().parents[2] / "models"
    verify_checkpoint(models / "idm-desk-side-64")
    idm, k = load_idm(models / "idm-desk-side-64")
    assert tuple(idm.config.cameras) == ("desk", "side") and k == 8 and idm.reads_state
    dy = {}
    for name, cameras, model in (("one", "desk", "idm-desk-64"), ("two", "desk,side", "idm-desk-side-64")):
        data = tmp_path / name
        subprocess.run([sys.executable, "-m", "vans_sim.cli", "record", "--tasks", "open_drawer", "--episodes", "3",
                        "--split", "heldout", "--seed-start", "100000", "--cameras", cameras, "--perturb-fraction", "0",
                        "--out", str(data), "--quiet"], check=True)
        dy[name] = evaluate_idm(models / model, data, tmp_path / f"eval-{name}", progress=False)["overall"]["rmse_y"]
    assert dy["two"] < 0.6 * dy["one"], dy
