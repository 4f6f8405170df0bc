"""ONNX export of one VDM denoiser call (`WanTransformer3DModel.forward`).

The graph: ``hidden_states (B, 7, K, H, W)``, ``timestep (B,)`` float, ``encoder_hidden_states (B, L, 384)``
in, ``velocity (B, 3, K, H, W)`` out, and with ``features=True`` also ``vdm_features (B, K * Hp * Wp, C)``,
the tokens an action head reads (``vans_engine.models.vdm.features``). The sampling loop (scheduler steps, input packing) stays in Python,
so one file serves every step count.

We use the dynamo exporter (``torch.onnx.export(..., dynamo=True)``): the legacy TorchScript exporter
fails on Wan's RMS norm.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from torch import nn

from vans_engine.models.vdm.configuration_vdm import CAPTION_LENGTH, IMAGE_SIZE, NUM_FRAMES
from vans_engine.models.vdm.features import DenoiserWithFeatures
from vans_engine.models.vdm.sampling import frame_size

INPUT_NAMES = ["hidden_states", "timestep", "encoder_hidden_states"]
OUTPUT_NAMES = ["velocity"]
FEATURES_OUTPUT = "vdm_features"


class _Denoiser(nn.Module):
    """Positional-argument, tensor-out view of the transformer: what the exporter traces."""

    def __init__(self, transformer: WanTransformer3DModel, outputs: int = 1):
        super().__init__()
        self.transformer = transformer
        self.outputs = outputs

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.transformer(hidden_states=hidden_states, timestep=timestep,
                               encoder_hidden_states=encoder_hidden_states, return_dict=False)
        return out[0] if self.outputs == 1 else tuple(out[:self.outputs])


def example_inputs(transformer: WanTransformer3DModel, batch_size: int = 1, num_frames: int = NUM_FRAMES,
                   image_size: int | tuple[int, int] = IMAGE_SIZE, caption_length: int = CAPTION_LENGTH,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random inputs of the exported graph's shapes, keyed by input name (for export and parity checks)."""
    config = transformer.config
    return {
        "hidden_states": torch.randn(batch_size, config.in_channels, num_frames, *frame_size(image_size),
                                     generator=generator),
        "timestep": torch.rand(batch_size, generator=generator) * 1000.0,
        "encoder_hidden_states": torch.randn(batch_size, caption_length, config.text_dim, generator=generator),
    }


def export_vdm_onnx(transformer: WanTransformer3DModel, path: str | Path, batch_size: int = 1,
                    num_frames: int = NUM_FRAMES, image_size: int | tuple[int, int] = IMAGE_SIZE,
                    caption_length: int = CAPTION_LENGTH, dynamic_batch: bool = True, features: bool = False) -> Path:
    """Export one denoiser forward to ONNX.

    Args:
        transformer (`WanTransformer3DModel`): the VDM; exported in float32 on the CPU, in eval mode.
        path (`str | Path`): output file, conventionally ``exported/vdm/model.onnx``.
        batch_size (`int`, defaults to `1`): batch of the example inputs (the fixed batch when
            `dynamic_batch` is False).
        num_frames (`int`, defaults to `8`): K; fixed in the graph (RoPE tables are sliced by it).
        image_size (`int` or `(int, int)`, defaults to `64`): side of square frames, or their ``(height,
            width)`` (camera views side by side); fixed in the graph.
        caption_length (`int`, defaults to `32`): caption tokens; fixed in the graph.
        dynamic_batch (`bool`, defaults to `True`): make the batch axis symbolic, so one file serves
            any number of sampled futures.
        features (`bool`, defaults to `False`): also output the transformer's last tokens, for a
            planner whose action head reads them.

    Returns:
        `Path`: the written file (weights embedded; the models are small).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Export a float32 CPU copy so the caller's model keeps its device, dtype and train/eval mode.
    denoiser = copy.deepcopy(transformer)
    module = _Denoiser(DenoiserWithFeatures(denoiser) if features else denoiser, outputs=2 if features else 1)
    module = module.to("cpu", torch.float32).eval()
    dynamic_shapes = None
    if dynamic_batch:
        # torch.export specialises a traced size of 1 to a constant, so trace a batch of at least 2;
        # the symbolic axis still accepts batch 1 at run time.
        batch_size = max(batch_size, 2)
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic_shapes = {name: {0: batch} for name in INPUT_NAMES}
    inputs = example_inputs(transformer, batch_size, num_frames, image_size, caption_length)
    program = torch.onnx.export(module, tuple(inputs[name] for name in INPUT_NAMES), dynamo=True,
                                input_names=INPUT_NAMES,
                                output_names=OUTPUT_NAMES + [FEATURES_OUTPUT] if features else OUTPUT_NAMES,
                                dynamic_shapes=dynamic_shapes, verbose=False)
    program.save(str(path), external_data=False)
    return path
