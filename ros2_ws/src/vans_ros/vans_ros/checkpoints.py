"""Which checkpoint the nodes load: one function, so the shipped model is found in one place."""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODEL = Path("models") / "vans-desk-64"
# ros2_ws/src/vans_ros/vans_ros/checkpoints.py -> the repository root, for a source checkout.
_REPO_ROOT = Path(__file__).resolve().parents[4]


def shipped_model_dir() -> Path | None:
    """``models/vans-desk-64`` under the working directory or the repository, if it is there."""
    for root in (Path.cwd(), _REPO_ROOT):
        candidate = root / SHIPPED_MODEL
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


def resolve_model_dir(model_dir: str, fallback_dir: Path | None = None) -> tuple[Path, bool]:
    """The checkpoint folder for a ``model_dir`` parameter, and whether it is the untrained stand-in.

    ``model_dir`` names a folder; empty means the shipped model. Where no model is shipped yet and
    ``fallback_dir`` is given (the demo does), a tiny random checkpoint is written there instead and
    the second value is True: whoever reports on it must say the planner is untrained.
    """
    if model_dir:
        return Path(model_dir), False
    shipped = shipped_model_dir()
    if shipped is not None:
        return shipped, False
    if fallback_dir is None:
        raise FileNotFoundError(f"parameter 'model_dir' is empty and no shipped model is at {SHIPPED_MODEL}: "
                                f"set model_dir to a checkpoint folder")
    from vans_engine.testing import tiny_checkpoint

    if not (fallback_dir / "model_index.json").is_file():
        tiny_checkpoint(fallback_dir)
    return fallback_dir, True
