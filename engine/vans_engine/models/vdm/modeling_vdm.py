"""Build and load the VDM transformer: a plain `diffusers.WanTransformer3DModel` at our size.

Saving is diffusers' own ``save_pretrained`` (``config.json`` + ``diffusion_pytorch_model.safetensors``).
Loading goes through :func:`load_vdm` because ``WanTransformer3DModel.from_pretrained`` needs
``accelerate`` (Wan's ``_keep_in_fp32_modules`` forces ``low_cpu_mem_usage=True``, which diffusers turns
off without accelerate and then refuses), and the engine must load on robots without it. Both read
the same files; with accelerate installed ``from_pretrained`` gives the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file

from vans_engine.models.vdm.attention import use_export_friendly_attention
from vans_engine.models.vdm.configuration_vdm import vdm_config


def make_vdm(**overrides: Any) -> WanTransformer3DModel:
    """A freshly initialised VDM transformer; `overrides` go to :func:`vdm_config`."""
    return use_export_friendly_attention(WanTransformer3DModel(**vdm_config(**overrides)))


def load_vdm(path: str | Path, device: str | torch.device = "cpu") -> WanTransformer3DModel:
    """Load a VDM folder written by ``save_pretrained``, in float32 and eval mode.

    Args:
        path (`str | Path`): folder with ``config.json`` and ``diffusion_pytorch_model.safetensors``.
        device (`str | torch.device`, defaults to `"cpu"`): where the weights go.

    Returns:
        `WanTransformer3DModel`: the loaded model.

    Raises:
        FileNotFoundError: a file is missing (named).
        ValueError: the weights do not fit the config (the file and keys are named).
    """
    path = Path(path)
    weights = path / SAFETENSORS_WEIGHTS_NAME
    for file in (path / WanTransformer3DModel.config_name, weights):
        if not file.is_file():
            raise FileNotFoundError(f"VDM file not found: {file}")
    model = WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(path))
    try:
        missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    except RuntimeError as error:  # shape mismatch
        raise ValueError(f"{weights} does not fit {path / 'config.json'}: {error}") from error
    if missing or unexpected:
        raise ValueError(f"{weights}: missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}")
    return use_export_friendly_attention(model).to(device).eval()
