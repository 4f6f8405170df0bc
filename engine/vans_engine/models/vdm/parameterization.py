"""What the VDM transformer's output means: a velocity, or a correction to the current frame.

``"velocity"``: the transformer predicts the flow-matching velocity ``noise - x_0`` directly.

``"current_frame_residual"``: the transformer predicts ``x_0 - current frame``, a correction to the
last context frame repeated over the K slots, and :class:`CurrentFrameResidual` turns it into the
velocity the sampler expects, ``(x_t - x_0) / sigma``. A robot's next second looks almost like its
current frame, so the prediction starts right (the output layer is zero-initialised, so an untrained
model answers "nothing moves") and training only has to learn what changes. On a 2-core CPU budget
this is the difference between a video model that beats the "hold the current frame" baseline and
one that does not (MODEL_CARD.md has the measurement).

Both take and give the same tensors, so the sampler, the ONNX graph's inputs and outputs and every
backend stay as they are; only the exported graph includes the conversion.
"""

from __future__ import annotations

import torch
from diffusers import WanTransformer3DModel
from torch import nn

from vans_engine.models.vdm.configuration_vdm import RGB_CHANNELS

PREDICTIONS = ("velocity", "current_frame_residual")
# Below this noise level the velocity is computed at this level: the last Euler step lands on x_0
# whatever the level, so this only keeps the division finite.
MIN_SIGMA = 1e-3


def check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"vdm prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return prediction


def current_frame(hidden_states: torch.Tensor) -> torch.Tensor:
    """The last context frame, ``(B, 3, 1, H, W)``, read from the packed model input.

    The context sits in channels 3-5 of time slots ``0 .. T-1`` and channel 6 is 1 in those slots
    (see ``pack_model_input``); the last filled slot is where the running count of filled slots
    reaches its total.
    """
    context = hidden_states[:, RGB_CHANNELS:2 * RGB_CHANNELS]
    filled = hidden_states[:, 2 * RGB_CHANNELS, :, :1, :1]  # (B, K, 1, 1)
    last = filled * (filled.cumsum(1) == filled.sum(1, keepdim=True)).to(filled.dtype)
    return (context * last.unsqueeze(1)).sum(2, keepdim=True)


class CurrentFrameResidual(nn.Module):
    """The transformer, its output read as ``x_0 - current frame`` and returned as a velocity.

    Called like the transformer (``hidden_states``, ``timestep``, ``encoder_hidden_states``,
    ``return_dict=False`` -> a 1-tuple), with its ``config``, ``device`` and ``dtype``.
    """

    def __init__(self, transformer: WanTransformer3DModel):
        super().__init__()
        self.transformer = transformer

    @property
    def config(self):
        return self.transformer.config

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def predict_clean(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                      encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """The predicted clean video ``x_0`` (B, 3, K, H, W)."""
        residual = self.transformer(hidden_states=hidden_states, timestep=timestep,
                                    encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
        return current_frame(hidden_states) + residual

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                return_dict: bool = False) -> tuple[torch.Tensor]:
        clean = self.predict_clean(hidden_states, timestep, encoder_hidden_states)
        sigma = (timestep.to(clean.dtype) / 1000.0).clamp(min=MIN_SIGMA).view(-1, 1, 1, 1, 1)
        return ((hidden_states[:, :RGB_CHANNELS] - clean) / sigma,)


def as_denoiser(transformer: WanTransformer3DModel, prediction: str):
    """The module the sampler calls: the transformer itself, or wrapped to read its output as a residual."""
    check_prediction(prediction)
    return transformer if prediction == "velocity" else CurrentFrameResidual(transformer)


def zero_output_layer(transformer: WanTransformer3DModel) -> WanTransformer3DModel:
    """Zero the final projection, so a fresh residual model predicts the current frame held."""
    nn.init.zeros_(transformer.proj_out.weight)
    nn.init.zeros_(transformer.proj_out.bias)
    return transformer
