import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Offscreen rendering through Mesa's EGL, as in CI; set before anything imports mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")
# No model weights or data sets are ever downloaded: fail instead of reaching for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Ten episodes each of two tasks on train scenes, seeds 0-9, so that the train, valid (seed 8)
    and test (9) splits all exist; a fifth of them perturbed. Shared by the training tests."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    subprocess.run([sys.executable, "-m", "vans_sim.cli", "record", "--tasks", "push_red,open_drawer",
                    "--episodes", "10", "--image-size", "64", "--split", "train", "--out", str(out),
                    "--perturb-fraction", "0.2", "--quiet"], check=True)
    return out


@pytest.fixture
def kill_at_first_checkpoint():
    """Start a training command, SIGKILL it (and its children) once ``out/checkpoints/last`` exists,
    and return the checkpoint it left."""

    def run(command: list[str], out: Path, timeout: float = 180) -> Path:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        last = out / "checkpoints" / "last"
        deadline = time.time() + timeout
        while not last.exists() and time.time() < deadline and process.poll() is None:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert last.exists(), process.stdout.read().decode()[-2000:]
        return last.resolve()

    return run
