"""Build a planner checkpoint from the stages' final models.

    vans-train assemble --vlm runs/vlm-sft --vdm runs/distill --idm runs/idm --alignment runs/alignment \\
        --steps 2 --out models/vans-desk-64

The checkpoint is the engine's (``Planner.save_pretrained``: ``model_index.json`` with a sha256 of
every file) with two additions the engine ignores: ``alignment/``, the video-caption model used by
``vans-train eval`` and as a reward, and ``training.json``, each stage's resolved config and its last
logged scalars. Both are hashed like every other file. ONNX graphs are exported into ``exported/``
so that the first ``onnxruntime`` load does not have to.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vans_engine.models.idm import load_idm
from vans_engine.models.vdm import CaptionEncoder, load_vdm, make_scheduler
from vans_engine.models.vlm import NextEventVLM
from vans_engine.planner import Planner, PlannerConfig

from vans_training.stages.vdm import resolve_vdm_folder, trained_prediction
from vans_training.trainer import FINAL, read_log

ALIGNMENT_DIR = "alignment"
TRAINING_RECORD = "training.json"


def resolve_model_folder(path: str | Path, marker: str = "config.json") -> Path:
    """A stage's output folder -> its ``final/`` model; a model folder is returned as it is."""
    path = Path(path)
    for candidate in (path / FINAL, path):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"no model ({marker}) in {path / FINAL} or {path}")


def stage_record(path: str | Path) -> dict:
    """The stage's config and its last train and eval scalars, when ``path`` is a stage output; the
    record a planner checkpoint keeps for it, when ``path`` is one of that checkpoint's components."""
    path = Path(path)
    checkpoint_record = path.parent / TRAINING_RECORD
    if checkpoint_record.is_file() and path.name in (records := json.loads(checkpoint_record.read_text())):
        return {**records[path.name], "checkpoint": str(path.parent)}
    config = path / "config.json"
    if not (path / "log.jsonl").exists() or not config.exists():
        return {"folder": str(path)}
    train, evaluation = read_log(path, "train"), read_log(path, "eval")
    return {"folder": str(path), "config": json.loads(config.read_text()),
            "last_train": train[-1] if train else None, "last_eval": evaluation[-1] if evaluation else None}


def assemble(vlm: str | Path, vdm: str | Path, idm: str | Path, steps: int, out: str | Path,
             alignment: str | Path | None = None, motion_gain: float = 1.0) -> Path:
    """Write the planner checkpoint ``out``; returns it. ``motion_gain`` is ``PlannerConfig.motion_gain``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    out = Path(out)
    vdm_folder = resolve_vdm_folder(vdm)
    vlm_model = NextEventVLM.from_pretrained(resolve_model_folder(vlm, "tokenizer.json"))
    vdm_model = load_vdm(vdm_folder)
    idm_model = load_idm(resolve_model_folder(idm))
    vdm_record = stage_record(vdm)
    sizes = vdm_record.get("config", {})
    config = PlannerConfig(image_size=idm_model.config.image_size,
                           context_frames=sizes.get("context_frames", PlannerConfig.context_frames),
                           future_frames=sizes.get("future_frames", PlannerConfig.future_frames),
                           num_inference_steps=steps,
                           vdm_prediction=trained_prediction(vdm_folder) or "velocity",
                           motion_gain=motion_gain, cameras=tuple(idm_model.config.cameras))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    records = {"vlm": stage_record(vlm), "vdm": vdm_record, "idm": stage_record(idm)}
    if alignment is not None:
        shutil.copytree(resolve_model_folder(alignment), out / ALIGNMENT_DIR)
        records["alignment"] = stage_record(alignment)
    (out / TRAINING_RECORD).write_text(json.dumps(records, indent=2) + "\n")
    planner = Planner(vlm_model, CaptionEncoder(), vdm_model, make_scheduler(), idm_model, config,
                      backend="torch", folder=out, trained=True)
    planner.save_pretrained(out, trained=True)
    Planner.from_pretrained(out, backend="onnxruntime")  # exports and checks the graphs
    return out
