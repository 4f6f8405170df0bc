"""Export a checkpoint's fixed-shape graphs to ONNX (and TensorRT engines built from them).

``exported/vdm/model.onnx`` is one denoiser call and ``exported/idm/model.onnx`` the IDM's chunk
head (or the action head on the VDM's tokens, which the VDM's graph then also outputs), both with a
symbolic batch axis. ``exported/manifest.json`` records the sha256 of the weights
they came from, so a planner re-exports when the weights change.

    vans export --model models/vans-desk-64 --format onnx
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from vans_engine.checkpoint import sha256_file
from vans_engine.constants import EXPORTED_DIR
from vans_engine.models.vdm.export import export_vdm_onnx
from vans_engine.models.vdm.parameterization import as_denoiser

IDM_OUTPUT = "actions"


def exported_paths(folder: Path) -> dict[str, Path]:
    base = Path(folder) / EXPORTED_DIR
    return {"vdm": base / "vdm" / "model.onnx", "idm": base / "idm" / "model.onnx"}


def _source_hashes(folder: Path) -> dict[str, str]:
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for name in ("vdm", "idm") for p in sorted((folder / name).glob("*")) if p.is_file()}


def exports_are_current(folder: Path, vdm_prediction: str = "velocity") -> bool:
    """Whether ``exported/`` was made from the weights now in ``folder`` and the same VDM prediction."""
    manifest = Path(folder) / EXPORTED_DIR / "manifest.json"
    if not manifest.exists() or not all(p.exists() for p in exported_paths(folder).values()):
        return False
    made_from = json.loads(manifest.read_text())
    return (made_from.get("sources") == _source_hashes(folder)
            and made_from.get("vdm_prediction", "velocity") == vdm_prediction)


def export_idm_onnx(idm, path: Path, future_frames: int) -> Path:
    """Export the action component: the IDM's chunk head, (B, K + 1, 3, H, W) frames in [-1, 1], H x W
    its :attr:`frame_shape` (and, for an IDM that reads proprioception, the (B, state_dim) current
    state), or a ``VideoFeatureIDM``'s (B, K * Hp * Wp, C) VDM tokens and state -> (B, K, action_dim)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(idm).cpu().float().eval()  # leave the caller's model on its device and dtype
    # A traced batch of 1 would be specialised to a constant; trace 2 and mark the axis symbolic.
    batch = torch.export.Dim("batch", min=1, max=1024)
    inputs = module.example_inputs(2, future_frames)
    program = torch.onnx.export(module, (), kwargs=inputs, dynamo=True, input_names=list(inputs),
                                output_names=[IDM_OUTPUT], dynamic_shapes={name: {0: batch} for name in inputs},
                                verbose=False)
    program.save(str(path), external_data=False)
    return path


def export_onnx(planner) -> dict[str, Path]:
    """Export the planner's VDM denoiser and IDM into its checkpoint folder's ``exported/``."""
    folder = Path(planner.folder)
    paths = exported_paths(folder)
    cfg = planner.config
    # The graph holds the whole denoiser call, including the residual-to-velocity conversion.
    export_vdm_onnx(as_denoiser(planner.vdm, cfg.vdm_prediction), paths["vdm"], num_frames=cfg.future_frames,
                    image_size=cfg.frame_size, caption_length=planner.text_encoder.max_length,
                    features=planner.idm.reads_vdm_features)
    export_idm_onnx(planner.idm, paths["idm"], cfg.future_frames)
    manifest = {"sources": _source_hashes(folder), "vdm_prediction": cfg.vdm_prediction}
    (folder / EXPORTED_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return paths


def export_tensorrt(planner, enable_fp16: bool = True) -> dict[str, Path]:
    """Build TensorRT engines (``*.plan``) from the ONNX files, exporting those first if needed."""
    from vans_engine.backends import TensorRTRunner

    folder = Path(planner.folder)
    if not exports_are_current(folder, planner.config.vdm_prediction):
        export_onnx(planner)
    engines = {}
    for name, onnx_path in exported_paths(folder).items():
        engine = onnx_path.with_suffix(".plan")
        TensorRTRunner(onnx_path, engine, force_engine_update=True, enable_fp16=enable_fp16)
        engines[name] = engine
    return engines
