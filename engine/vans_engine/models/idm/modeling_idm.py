"""Inverse dynamics: the action that turns one frame into the next.

Two heads share one pair encoder:

* the **pair head** maps frames ``t`` and ``t+1`` (and proprioception when given) to the action
  taken at ``t``; it is trained on every recorded transition, expert and perturbed alike;
* the **chunk head** maps the current frame plus N predicted frames to N actions at once, each
  action seeing its neighbours' transitions through a temporal convolution. The planner uses it on
  the VDM's answer video.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vans_engine.constants import ACTION_MASK, ACTIONS, FRAMES, STATE
from vans_engine.models.idm.configuration_idm import IDMConfig


class PairEncoder(nn.Module):
    """Two stacked RGB frames (6 channels) -> one feature vector of the transition between them."""

    def __init__(self, config: IDMConfig):
        super().__init__()
        layers, c_in = [], 6
        for c_out in config.channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.channels)
        self.project = nn.Linear(c_in * side * side, config.hidden_dim)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        x = self.convs(torch.cat([before, after], dim=1))
        return F.silu(self.project(x.flatten(1)))


class InverseDynamicsModel(ModelMixin, ConfigMixin):
    """Frames -> end-effector actions (dx, dy, dz, gripper), each in [-1, 1].

    Frames are float tensors in [-1, 1], channels first. See :class:`IDMConfig` for the arguments.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, image_size: int = 64, action_dim: int = 4, state_dim: int = 4,
                 channels: tuple[int, ...] = (32, 64, 128, 128), hidden_dim: int = 256, chunk_kernel: int = 3):
        super().__init__()
        cfg = IDMConfig(image_size, action_dim, state_dim, tuple(channels), hidden_dim, chunk_kernel)
        self.encoder = PairEncoder(cfg)
        # The pair head sees proprioception plus a flag saying whether it was given at all.
        self.pair_head = nn.Sequential(nn.Linear(hidden_dim + state_dim + 1, hidden_dim), nn.SiLU(),
                                       nn.Linear(hidden_dim, action_dim))
        self.chunk_mixer = nn.Conv1d(hidden_dim, hidden_dim, chunk_kernel, padding=chunk_kernel // 2)
        self.chunk_head = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, action_dim))

    # -- inference ------------------------------------------------------------------------------------

    def _check_frames(self, frames: torch.Tensor, min_frames: int) -> None:
        size = self.config.image_size
        if frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[-2:] != (size, size):
            raise ValueError(f"frames must have shape (B, N, 3, {size}, {size}), got {tuple(frames.shape)}")
        if frames.shape[1] < min_frames:
            raise ValueError(f"need at least {min_frames} frames, got {frames.shape[1]}")

    def predict_action(self, before: torch.Tensor, after: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) frame pairs, optional (B, state_dim) proprioception -> (B, action_dim)."""
        feature = self.encoder(before, after)
        if state is None:
            extra = feature.new_zeros(feature.shape[0], self.config.state_dim + 1)
        else:
            extra = torch.cat([state.to(feature.dtype), feature.new_ones(feature.shape[0], 1)], dim=1)
        return torch.tanh(self.pair_head(torch.cat([feature, extra], dim=1)))

    def predict_action_chunk(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, N + 1, 3, H, W): the current frame then N predicted ones -> (B, N, action_dim)."""
        self._check_frames(frames, 2)
        b, n1 = frames.shape[:2]
        before = frames[:, :-1].reshape(b * (n1 - 1), *frames.shape[2:])
        after = frames[:, 1:].reshape(b * (n1 - 1), *frames.shape[2:])
        features = self.encoder(before, after).view(b, n1 - 1, -1)
        mixed = features + self.chunk_mixer(features.transpose(1, 2)).transpose(1, 2)
        return torch.tanh(self.chunk_head(mixed))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """The exported graph: the chunk head."""
        return self.predict_action_chunk(frames)

    # -- training -------------------------------------------------------------------------------------

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean squared error of both heads on a batch of clips.

        ``batch[FRAMES]`` (B, N + 1, 3, H, W), ``batch[ACTIONS]`` (B, N, A), optional
        ``batch[ACTION_MASK]`` (B, N) and ``batch[STATE]`` (B, N, state_dim), the proprioception
        before each action.
        """
        frames, actions = batch[FRAMES], batch[ACTIONS]
        self._check_frames(frames, 2)
        b, n = actions.shape[:2]
        mask = batch.get(ACTION_MASK, torch.ones(b, n, dtype=torch.bool, device=actions.device)).float()
        chunk = self.predict_action_chunk(frames)
        state = batch.get(STATE)
        pair = self.predict_action(
            frames[:, :-1].reshape(b * n, *frames.shape[2:]), frames[:, 1:].reshape(b * n, *frames.shape[2:]),
            None if state is None else state.reshape(b * n, -1)).view(b, n, -1)
        weight = mask.unsqueeze(-1) / mask.sum().clamp(min=1) / actions.shape[-1]
        chunk_loss = ((chunk - actions) ** 2 * weight).sum()
        pair_loss = ((pair - actions) ** 2 * weight).sum()
        loss = chunk_loss + pair_loss
        return loss, {"loss": loss.item(), "chunk_mse": chunk_loss.item(), "pair_mse": pair_loss.item()}
