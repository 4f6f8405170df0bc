"""Inverse dynamics: the action that turns one frame into the next.

Two heads share one pair encoder:

* the **pair head** maps frames ``t`` and ``t+1`` (and proprioception when given) to the action
  taken at ``t``; it is trained on every recorded transition, expert and perturbed alike;
* the **chunk head** maps the current frame plus N predicted frames to N actions at once, each
  action seeing its neighbours' transitions through a temporal convolution. The planner uses it on
  the VDM's answer video. With ``chunk_state`` it also reads the proprioception at the current
  frame (the only state a planner knows: the future's is what the actions decide). With
  ``chunk_modes`` > 1 it proposes several whole chunks, each a Gaussian with a probability, and the
  planner runs the most probable one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vans_engine.constants import ACTION_MASK, ACTIONS, FRAMES, STATE
from vans_engine.models.idm.configuration_idm import IDMConfig

# Bounds of a mixture mode's log standard deviation: actions live in [-1, 1], and below e^-5 the
# likelihood of an exactly repeated expert action would grow without limit.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0
INITIAL_STD = 0.3


def most_probable_chunk(logits: torch.Tensor | None, means: torch.Tensor) -> torch.Tensor:
    """(B, K) mode logits and (B, N, K, A) means -> (B, N, A), the means of each clip's likeliest mode
    (the only one when K = 1, which has no logits)."""
    b, n, modes, a = means.shape
    if modes == 1:
        return means[:, :, 0]
    return means.gather(2, logits.argmax(dim=1)[:, None, None, None].expand(b, n, 1, a)).squeeze(2)


class PairEncoder(nn.Module):
    """Two stacked RGB frames (6 channels) -> one feature vector of the transition between them.

    A frame of several views side by side (``cameras``) is read view by view with the same
    convolutions, and the views' pooled features are joined in their order before the projection.
    """

    def __init__(self, config: IDMConfig):
        super().__init__()
        layers, c_in = [], 6
        for c_out in config.channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.pooling = config.pooling
        self.views = len(config.cameras)
        side = config.image_size // 2 ** len(config.channels)
        pooled = c_in * side * side if config.pooling == "flatten" else 2 * c_in
        self.project = nn.Linear(pooled * self.views, config.hidden_dim)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        x = torch.cat([before, after], dim=1)
        b, c, h, w = x.shape
        if self.views > 1:  # (B, 6, H, V * H) -> (B * V, 6, H, H), each view a picture of its own
            x = x.view(b, c, h, self.views, h).permute(0, 3, 1, 2, 4).reshape(b * self.views, c, h, h)
        x = self.convs(x)
        x = x.flatten(1) if self.pooling == "flatten" else torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return F.silu(self.project(x.reshape(b, -1)))


class InverseDynamicsModel(ModelMixin, ConfigMixin):
    """Frames -> end-effector actions (dx, dy, dz, gripper), each in [-1, 1].

    Frames are float tensors in [-1, 1], channels first. See :class:`IDMConfig` for the arguments.
    """

    config_name = "config.json"
    reads_vdm_features = False  # it reads the drawn frames (see VideoFeatureIDM for the other kind)

    @register_to_config
    def __init__(self, image_size: int = 64, action_dim: int = 4, state_dim: int = 4,
                 channels: tuple[int, ...] = (32, 64, 128, 128), hidden_dim: int = 256, chunk_kernel: int = 3,
                 pooling: str = "flatten", chunk_state: bool = False, state_mean: tuple[float, ...] | None = None,
                 state_std: tuple[float, ...] | None = None, chunk_modes: int = 1,
                 cameras: tuple[str, ...] = ("desk",)):
        super().__init__()
        cfg = IDMConfig(image_size, action_dim, state_dim, tuple(channels), hidden_dim, chunk_kernel, pooling,
                        chunk_state, state_mean, state_std, chunk_modes, tuple(cameras))
        self.encoder = PairEncoder(cfg)
        # The pair head sees proprioception plus a flag saying whether it was given at all.
        self.pair_head = nn.Sequential(nn.Linear(hidden_dim + state_dim + 1, hidden_dim), nn.SiLU(),
                                       nn.Linear(hidden_dim, action_dim))
        self.chunk_mixer = nn.Conv1d(hidden_dim, hidden_dim, chunk_kernel, padding=chunk_kernel // 2)
        # one chunk of means per mode (a single one: the regression head)
        self.chunk_head = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, chunk_modes * action_dim))
        if chunk_modes > 1:
            self.chunk_log_std = nn.Linear(hidden_dim, chunk_modes * action_dim)
            nn.init.zeros_(self.chunk_log_std.weight)
            nn.init.constant_(self.chunk_log_std.bias, math.log(INITIAL_STD))
            # a mode is a motion of the whole chunk: its probability is read from all of its steps
            self.chunk_mode_logits = nn.Linear(hidden_dim, chunk_modes)
        if chunk_state:
            # Zero-initialised: a chunk head trained without proprioception starts out unchanged.
            self.chunk_state_proj = nn.Linear(state_dim, hidden_dim)
            nn.init.zeros_(self.chunk_state_proj.weight)
            nn.init.zeros_(self.chunk_state_proj.bias)
        stats = cfg.state_mean is not None
        self.register_buffer("state_offset", torch.tensor(cfg.state_mean if stats else [0.0] * state_dim), persistent=False)
        self.register_buffer("state_scale", torch.tensor(cfg.state_std if stats else [1.0] * state_dim), persistent=False)

    @property
    def reads_state(self) -> bool:
        """Whether the chunk head needs the current proprioception."""
        return bool(self.config.chunk_state)

    # -- inference ------------------------------------------------------------------------------------

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of the frames this IDM reads: its views side by side."""
        return self.config.image_size, self.config.image_size * len(self.config.cameras)

    def _check_frames(self, frames: torch.Tensor, min_frames: int) -> None:
        h, w = self.frame_shape
        if frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[-2:] != (h, w):
            views = f" ({', '.join(self.config.cameras)} side by side)" if len(self.config.cameras) > 1 else ""
            raise ValueError(f"frames must have shape (B, N, 3, {h}, {w}){views}, got {tuple(frames.shape)}")
        if frames.shape[1] < min_frames:
            raise ValueError(f"need at least {min_frames} frames, got {frames.shape[1]}")

    def _normalized_state(self, state: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if state.ndim != 2 or state.shape[1] != self.config.state_dim:
            raise ValueError(f"state must have shape (B, {self.config.state_dim}), got {tuple(state.shape)}")
        return ((state.float() - self.state_offset) / self.state_scale).to(dtype)

    def predict_action(self, before: torch.Tensor, after: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) frame pairs, optional (B, state_dim) proprioception -> (B, action_dim)."""
        return self._pair_actions(self.encoder(before, after), state)

    def _encode_transitions(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, N + 1, 3, H, W) frames -> (B, N, hidden_dim), the pair encoder on each consecutive pair."""
        b, n1 = frames.shape[:2]
        before = frames[:, :-1].reshape(b * (n1 - 1), *frames.shape[2:])
        after = frames[:, 1:].reshape(b * (n1 - 1), *frames.shape[2:])
        return self.encoder(before, after).view(b, n1 - 1, -1)

    def _pair_actions(self, feature: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """The pair head on (M, hidden_dim) transition features and optional (M, state_dim) proprioception."""
        if state is None:
            extra = feature.new_zeros(feature.shape[0], self.config.state_dim + 1)
        else:
            extra = torch.cat([self._normalized_state(state, feature.dtype), feature.new_ones(feature.shape[0], 1)], dim=1)
        return torch.tanh(self.pair_head(torch.cat([feature, extra], dim=1)))

    def predict_action_chunk(self, frames: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N + 1, 3, H, W): the current frame then N predicted ones -> (B, N, action_dim).

        ``state`` (B, state_dim) is the proprioception at the current frame: required when the chunk
        head reads it (:attr:`reads_state`), ignored otherwise, so callers that have it always pass it.
        A mixture head (``chunk_modes`` > 1) gives the means of its most probable mode.
        """
        return most_probable_chunk(*self.chunk_mixture(frames, state)[:2])

    def chunk_mixture(self, frames: torch.Tensor, state: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """The chunk head's modes, for the inputs of :meth:`predict_action_chunk`: mode logits
        (B, K), means (B, N, K, action_dim) in [-1, 1] and log standard deviations of the same shape
        (logits and log standard deviations are ``None`` for the regression head, whose one mode is
        its chunk)."""
        self._check_frames(frames, 2)
        return self._chunk_mixture(self._encode_transitions(frames), state)

    def _chunk_mixture(self, features: torch.Tensor, state: torch.Tensor | None
                       ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """:meth:`chunk_mixture` on (B, N, hidden_dim) transition features."""
        b, n = features.shape[:2]
        if self.reads_state:
            if state is None:
                raise ValueError("this IDM's chunk head reads proprioception (chunk_state): pass the current "
                                 f"state, shape (B, {self.config.state_dim})")
            if state.shape[0] != b:
                raise ValueError(f"{b} clips but {state.shape[0]} states")
            features = features + self.chunk_state_proj(self._normalized_state(state, features.dtype))[:, None]
        mixed = features + self.chunk_mixer(features.transpose(1, 2)).transpose(1, 2)
        modes, actions = self.config.chunk_modes, self.config.action_dim
        means = torch.tanh(self.chunk_head(mixed)).view(b, n, modes, actions)
        if modes == 1:
            return None, means, None
        activated = F.silu(mixed)
        log_std = self.chunk_log_std(activated).view(b, n, modes, actions).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.chunk_mode_logits(activated.mean(dim=1)), means, log_std

    def forward(self, frames: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """The exported graph: the chunk head."""
        return self.predict_action_chunk(frames, state)

    def example_inputs(self, batch_size: int, future_frames: int) -> dict[str, torch.Tensor]:
        """Zero inputs of the exported graph's shapes, keyed by input name: the current frame and
        ``future_frames`` drawn ones (and the state, for a chunk head that reads it)."""
        inputs = {FRAMES: torch.zeros(batch_size, future_frames + 1, 3, *self.frame_shape)}
        if self.reads_state:
            inputs["state"] = torch.zeros(batch_size, self.config.state_dim)
        return inputs

    # -- training -------------------------------------------------------------------------------------

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean squared error of the pair head, and of the chunk head or, for a mixture, its negative
        log-likelihood per action component, on a batch of clips.

        ``batch[FRAMES]`` (B, N + 1, 3, H, W), ``batch[ACTIONS]`` (B, N, A), optional
        ``batch[ACTION_MASK]`` (B, N) and ``batch[STATE]`` (B, N, state_dim), the proprioception
        before each action.
        """
        frames, actions = batch[FRAMES], batch[ACTIONS]
        self._check_frames(frames, 2)
        b, n = actions.shape[:2]
        mask = batch.get(ACTION_MASK, torch.ones(b, n, dtype=torch.bool, device=actions.device)).float()
        state = batch.get(STATE)
        if self.reads_state and state is None:
            raise ValueError(f"this IDM's chunk head reads proprioception: the batch needs {STATE!r}")
        if frames.shape[1] != n + 1:
            raise ValueError(f"{n} actions need {n + 1} frames, got {frames.shape[1]}")
        # Both heads read the same transitions: encode them once (the encoder is most of the cost).
        features = self._encode_transitions(frames)
        logits, means, log_std = self._chunk_mixture(features, None if state is None else state[:, 0])
        pair = self._pair_actions(features.reshape(b * n, -1),
                                  None if state is None else state.reshape(b * n, -1)).view(b, n, -1)
        elements = mask.sum().clamp(min=1) * actions.shape[-1]
        weight = mask.unsqueeze(-1) / elements
        pair_loss = ((pair - actions) ** 2 * weight).sum()
        info = {}
        if log_std is None:
            chunk_loss = ((means[:, :, 0] - actions) ** 2 * weight).sum()
            info["chunk_mse"] = chunk_loss.item()
        else:
            z = (actions[:, :, None] - means) / log_std.exp()
            log_density = -0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)
            per_mode = (log_density * mask[:, :, None, None]).sum(dim=(1, 3))
            chunk_loss = -torch.logsumexp(F.log_softmax(logits, dim=1) + per_mode, dim=1).sum() / elements
            with torch.no_grad():  # the error of the actions the planner would run, to compare with regression
                info["chunk_mse"] = ((most_probable_chunk(logits, means) - actions) ** 2 * weight).sum().item()
            info["chunk_nll"] = chunk_loss.item()
        loss = chunk_loss + pair_loss
        return loss, {"loss": loss.item(), **info, "pair_mse": pair_loss.item()}
