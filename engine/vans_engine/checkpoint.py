"""Checkpoint folders: ``model_index.json`` with a sha256 for every file, and their verification.

A planner checkpoint is a folder::

    model_index.json        components as [library, class], sizes, action space, trained flag,
                            and {"files": {relative path: sha256}}
    vlm/                    config.json, model.safetensors, tokenizer.json, ...
    vdm/                    config.json, diffusion_pytorch_model.safetensors
    scheduler/              scheduler_config.json
    idm/                    config.json, diffusion_pytorch_model.safetensors
    exported/               ONNX files and TensorRT engines (not hashed: rebuilt from the above)

Loading verifies every listed file before any weight is read, and every failure names the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vans_engine.constants import EXPORTED_DIR, MODEL_INDEX


class CheckpointError(ValueError):
    """A checkpoint folder is missing a file, has a corrupt one, or does not fit the model."""


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def hashed_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` but the index itself and exported engines."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MODEL_INDEX and not rel.startswith(EXPORTED_DIR + "/"):
            files[rel] = sha256_file(path)
    return files


def write_model_index(folder: Path, index: dict) -> dict:
    """Write ``model_index.json`` = ``index`` plus the hashes of every file now in ``folder``."""
    folder = Path(folder)
    full = {**index, "files": hashed_files(folder)}
    (folder / MODEL_INDEX).write_text(json.dumps(full, indent=2) + "\n")
    return full


def read_model_index(folder: Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    path = folder / MODEL_INDEX
    if not path.exists():
        raise CheckpointError(f"{path}: missing; not a vans_engine checkpoint folder")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from e
    if not isinstance(index.get("files"), dict):
        raise CheckpointError(f"{path}: no 'files' table of sha256 hashes")
    return index


def verify_checkpoint(folder: Path) -> dict:
    """Check every file listed in ``model_index.json`` exists and has its hash; return the index."""
    folder = Path(folder)
    index = read_model_index(folder)
    for rel, expected in index["files"].items():
        path = folder / rel
        if not path.exists():
            raise CheckpointError(f"{path}: missing file listed in {MODEL_INDEX}")
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(f"{path}: sha256 mismatch (expected {expected[:12]}…, found {actual[:12]}…); "
                                  "the file is corrupt or was changed after saving")
    return index
