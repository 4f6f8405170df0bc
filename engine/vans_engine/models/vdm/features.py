"""The VDM's tokens of the future, for an action head that reads them (``VideoFeatureIDM``).

Wan's transformer ends with a modulated norm and a linear projection from its width to pixels
(``proj_out``). The input of that projection, one token per patch of each future frame, is what the
transformer knows of the frames it is about to draw. diffusers returns only the pixels, so
:class:`DenoiserWithFeatures` reads the projection's input with a hook that lives for one call: no
state stays on the shared transformer, and ``torch.onnx.export`` traces the call as it runs.
"""

from __future__ import annotations

import torch
from torch import nn


def token_layout(vdm_config, frame_size: tuple[int, int], num_frames: int) -> dict:
    """What a ``VideoFeatureIDM`` must be built with to read the tokens of the VDM of ``vdm_config``
    drawing ``num_frames`` frames of ``frame_size`` (height, width): their width and patch grid."""
    (height, width), (_, patch_h, patch_w) = frame_size, vdm_config.patch_size
    return {"feature_dim": vdm_config.num_attention_heads * vdm_config.attention_head_dim,
            "num_frames": num_frames, "patch_grid": (height // patch_h, width // patch_w)}


class DenoiserWithFeatures(nn.Module):
    """A denoiser (the transformer, or a wrapper holding it as ``.transformer``) called as usual,
    returning ``(velocity, tokens)``: tokens ``(B, K * Hp * Wp, C)`` before the output projection."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser

    @property
    def transformer(self) -> nn.Module:
        return getattr(self.denoiser, "transformer", self.denoiser)

    @property
    def config(self):
        return self.denoiser.config

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                return_dict: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        kept = []
        handle = self.transformer.proj_out.register_forward_pre_hook(lambda module, args: kept.append(args[0]))
        try:
            velocity = self.denoiser(hidden_states=hidden_states, timestep=timestep,
                                     encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
        finally:
            handle.remove()
        return velocity, kept[-1]
