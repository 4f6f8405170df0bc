from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Ten episodes each of two tasks on train scenes, seeds 0-9, so that the train, valid (seed 8)
    and test (9) splits all exist; a fifth of them perturbed."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    subprocess.run([sys.executable, "-m", "vans_sim.cli", "record", "--tasks", "push_red,open_drawer",
                    "--episodes", "10", "--image-size", "64", "--split", "train", "--out", str(out),
                    "--perturb-fraction", "0.2", "--quiet"], check=True)
    return out
