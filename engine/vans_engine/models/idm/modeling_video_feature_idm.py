"""An action head that reads the video model's features of the future instead of its pixels.

The planner's VDM draws the next event in two denoising steps; :class:`InverseDynamicsModel` then
reads the motion back from the drawn pixels, where a 64-pixel frame shows a move towards the camera
in a few faint pixels. This head reads what the VDM's transformer knows about that future directly:
its last block's output tokens (after the final norm, before the projection to pixels) at one
denoising step, one token per 8x8 patch of each of the K future frames. It is the "predictive visual
representation" of Video Prediction Policy (Hu et al., 2024), which acts from a video diffusion
model's features at its first denoising step; at that step they hold the context frames and the
caption's future, before any pixel is drawn.

Layout: the VDM's tokens ``(B, K * Hp * Wp, C)`` (Wan's order: frame, then row, then column of
patches) are averaged over ``pool x pool`` patches, each pooled cell is projected to ``cell_dim``, a
frame's cells are joined (their position says where things are) into one vector, the
proprioception at the current frame is added, and a temporal convolution lets each of the K actions
see its neighbours, as in the pixel IDM's chunk head.

With ``num_members`` > 1 the head is an ensemble: that many such heads, each from its own initial
weights and trained on its own bootstrap weighting of the samples, read the same pooled tokens. Heads
trained alike from different seeds go to different buttons when the tokens leave them in doubt, so
their mean can be a motion towards neither; ``ensemble_vote`` picks how the members' plans become
one: ``"mean"`` averages them, ``"medoid"`` takes the plan of the member closest to all the others
(a vote for the motion most of them agree on). Either costs nothing beside the VDM.

With ``num_objects`` > 0 each member also learns, as an auxiliary task, where the scene's objects
stand relative to the tool point at each of the K steps (``OBJECT_OFFSETS``, from the recorded
object state). The actions of a pick depend on where one block stands, and only the pick samples
tell the action loss so; every frame of every episode shows all the objects, so the auxiliary target
asks the readout to find them from every sample. It is trained, then unused: the exported graph
returns the actions alone. Measured on the planner's first-step tokens, it also tells how much of the
objects' places the tokens hold: little (the model card's "Where episodes stop" section).

With ``frame_keypoints`` > 0 each member also reads the current frame, the one camera image the
planner has that is true rather than drawn, through a small fully convolutional net and a spatial
softmax of that many keypoints (Levine et al.'s deep spatial autoencoders): where each keypoint
looked, as image x, y, joins the proprioception. A convolution finds a block wherever it stands and
the softmax hands its place on as a number, so a block placed where the train split put none is
still found. With ``object_keypoints`` = O the first O keypoints are also taught where the desk
camera shows each of the scene's O objects (``OBJECT_IMAGE_XY``), so that they sit on the objects
instead of spreading over the desk, where the light moves them. Taught so, they find the objects to
1-3 pixels on held-out desks, where the VDM's first-step tokens place them no better than 16 cm (the
model card's "current frame" section).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vans_engine.constants import ACTION_MASK, ACTIONS, OBJECT_IMAGE_XY, OBJECT_OFFSETS, STATE

VDM_FEATURES = "vdm_features"  # batch key and graph input: (B, K * Hp * Wp, C) VDM tokens
CURRENT_FRAME = "frame"  # batch key and graph input: (B, 3, H, W) the last context frame in [-1, 1]
MEMBER_WEIGHTS = "member_weights"  # optional batch key: (num_members, B) float, each member's sample weights
ENSEMBLE_VOTES = ("mean", "medoid")
READOUTS = ("cells", "keypoints", "cells_and_keypoints")
OBJECT_OFFSET_SCALE = 0.1  # metres: the auxiliary target is the offset over this, of order one on the desk


class _FrameKeypoints(nn.Module):
    """(B, 3, H, W) frame in [-1, 1] -> (B, keypoints, 2): where each keypoint's spatial softmax looked,
    as image x, y with the image's edges at -1 and 1 (``vans_sim.scene.project_to_desk_image``'s
    convention, so that a keypoint can be taught where an object is).

    Each channel of the frame is first standardised over the image, since held-out desks are lit
    brighter and coloured otherwise. Then come one stride-2 convolution and dilated ones that widen the
    view to about a third of the image at half its resolution, so that a keypoint can tell a block
    from its surroundings and still place it within a pixel or two."""

    def __init__(self, keypoints: int, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        for out, kernel, stride, dilation in ((width // 2, 5, 2, 1), (width, 3, 1, 1), (width, 3, 1, 2),
                                              (width, 3, 1, 4)):
            layers += [nn.Conv2d(channels, out, kernel, stride=stride, padding=dilation * (kernel // 2),
                                 dilation=dilation), nn.GroupNorm(8, out), nn.SiLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        self.logits = nn.Conv2d(channels, keypoints, 1)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        mean = frame.mean(dim=(2, 3), keepdim=True)
        spread = (frame - mean).square().mean(dim=(2, 3), keepdim=True).add(1e-4).sqrt()
        logits = self.logits(self.features((frame - mean) / spread))  # (B, keypoints, h, w)
        h, w = logits.shape[-2:]
        y, x = torch.meshgrid(torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=logits.dtype, device=logits.device),
                              torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=logits.dtype, device=logits.device),
                              indexing="ij")  # each cell's centre
        attention = torch.softmax(logits.flatten(2), dim=2)  # (B, keypoints, h * w)
        return attention @ torch.stack([x, y], dim=-1).reshape(h * w, 2)


class _ActionHead(nn.Module):
    """One member: pooled cells -> per-frame features (+ proprioception) -> temporal mix (:meth:`trunk`);
    ``head`` then gives K actions and ``object_offsets`` the auxiliary task's answer.

    A frame's feature is read from its cells (``readout``): ``"cells"`` joins every cell, so that a
    weight belongs to a place on the desk; ``"keypoints"`` lets each of ``num_keypoints`` learned
    queries attend over the cells (a spatial softmax) and keeps where it looked, as image coordinates
    in [-1, 1], and what it saw there; ``"cells_and_keypoints"`` reads both. A weight per cell learns
    nothing about a cell where training never put an object; a keypoint hands the place over as a
    number, which a linear layer carries to places it has not seen. With ``frame_keypoints`` the
    current frame's keypoints join the proprioception.
    """

    def __init__(self, feature_dim: int, grid: tuple[int, int], cell_dim: int, hidden_dim: int, action_dim: int,
                 state_dim: int, readout: str, num_keypoints: int, num_objects: int, frame_keypoints: int):
        super().__init__()
        rows, cols = grid
        self.readout, self.cell_dim = readout, cell_dim
        self.cell = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, cell_dim), nn.SiLU())
        width = rows * cols * cell_dim if readout != "keypoints" else 0
        if readout != "cells":
            self.keypoint_logits = nn.Linear(cell_dim, num_keypoints)
            width += num_keypoints * (2 + cell_dim)
            y, x = torch.meshgrid(torch.linspace(-1, 1, rows), torch.linspace(-1, 1, cols), indexing="ij")
            self.register_buffer("cell_xy", torch.stack([x, y], dim=-1).reshape(rows * cols, 2), persistent=False)
        self.frame = nn.Linear(width, hidden_dim)
        self.state = nn.Linear(state_dim, hidden_dim)
        if frame_keypoints:
            self.frame_keypoints = _FrameKeypoints(frame_keypoints)
            self.frame_places = nn.Linear(2 * frame_keypoints, hidden_dim)
        self.mixer = nn.Conv1d(hidden_dim, hidden_dim, 3, padding=1)
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, action_dim))
        self.object_offsets = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 3 * num_objects)) if num_objects else None

    def projected_cells(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, K, rows, cols, C) pooled features -> (B, K, rows * cols, cell_dim)."""
        b, k = pooled.shape[:2]
        return self.cell(pooled).reshape(b, k, -1, self.cell_dim)

    def keypoints(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, rows * cols, cell_dim) projected cells -> where each query looked, (B, K, keypoints, 2)
        image x, y in [-1, 1], and what it saw there, (B, K, keypoints, cell_dim)."""
        attention = torch.softmax(self.keypoint_logits(cells), dim=2)  # (B, K, rows * cols, keypoints)
        where = torch.einsum("bkcp,cd->bkpd", attention, self.cell_xy.to(cells.dtype))
        return where, torch.einsum("bkcp,bkcf->bkpf", attention, cells)

    def read_frames(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, K, rows, cols, C) pooled features -> (B, K, hidden_dim)."""
        b, k = pooled.shape[:2]
        cells = self.projected_cells(pooled)
        parts = [] if self.readout == "keypoints" else [cells.reshape(b, k, -1)]
        if self.readout != "cells":
            parts += [torch.cat(self.keypoints(cells), dim=-1).reshape(b, k, -1)]
        return self.frame(torch.cat(parts, dim=-1))

    def trunk(self, pooled: torch.Tensor, normalized_state: torch.Tensor,
              frame_keypoints: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, rows, cols, C) pooled features, (B, state_dim) state and, with frame keypoints, the
        current frame's (B, keypoints, 2) -> (B, K, hidden_dim)."""
        now = self.state(normalized_state)
        if frame_keypoints is not None:
            now = now + self.frame_places(frame_keypoints.flatten(1))
        frames = F.silu(self.read_frames(pooled) + now[:, None])
        return frames + self.mixer(frames.transpose(1, 2)).transpose(1, 2)


class VideoFeatureIDM(ModelMixin, ConfigMixin):
    """VDM tokens of the K future frames and the current proprioception -> K actions in [-1, 1].

    Args:
        feature_dim (`int`, defaults to 192): width of the VDM's tokens (its attention heads times
            their dimension).
        num_frames (`int`, defaults to 8): K, frames the VDM draws (its temporal patch is 1).
        patch_grid (`tuple[int, int]`, defaults to `(8, 8)`): patches per frame, rows and columns
            (frame height and width over the VDM's spatial patch size).
        pool (`int`, defaults to 2): side of the square of patches averaged into one cell.
        cell_dim (`int`, defaults to 48): width of a pooled cell after its projection.
        hidden_dim (`int`, defaults to 256): width of a frame's feature and of the head.
        action_dim (`int`, defaults to 4), state_dim (`int`, defaults to 4): dx, dy, dz, gripper; tool
            point and gripper opening.
        state_mean, state_std (`tuple[float, ...]`, *optional*): the training data's proprioception
            statistics; the head reads ``(state - mean) / std``.
        feature_step (`int`, defaults to 0): the denoising step whose tokens are read (0: the first,
            from pure noise).
        image_size (`int`, defaults to 64), cameras (`tuple[str, ...]`, defaults to `("desk",)`): the
            views the planner's VDM draws, side by side; the planner checks them as it checks the
            pixel IDM's.
        num_members (`int`, defaults to 1): heads read side by side (an ensemble).
        ensemble_vote (`str`, defaults to `"mean"`): how an ensemble's plans become one, `"mean"` or
            `"medoid"` (the member whose K actions are nearest, in summed Euclidean distance, to the others').
        readout (`str`, defaults to `"cells"`): how a frame's pooled cells become its feature: `"cells"`
            joins them all, `"keypoints"` is a spatial softmax of ``num_keypoints`` learned queries
            (where each looked and what it saw there; see the module's ``_ActionHead``),
            `"cells_and_keypoints"` both side by side.
        num_keypoints (`int`, defaults to 16): the queries of the `"keypoints"` readout.
        num_objects (`int`, defaults to 0): objects whose offsets from the tool point each member learns
            to tell, an auxiliary task of training (the module's docstring); 0 learns the actions alone.
        object_weight (`float`, defaults to 1.0): the auxiliary loss's weight beside the actions'.
        frame_keypoints (`int`, defaults to 0): keypoints each member finds in the current frame (the
            module's docstring); the graph then takes a third input, ``frame``. 0 reads no frame.
        object_keypoints (`int`, defaults to 0): the first that many frame keypoints are taught where the
            desk camera shows each object, an auxiliary task of training (one camera only).
    """

    config_name = "config.json"
    reads_vdm_features = True
    reads_state = True

    @register_to_config
    def __init__(self, feature_dim: int = 192, num_frames: int = 8, patch_grid: tuple[int, int] = (8, 8),
                 pool: int = 2, cell_dim: int = 48, hidden_dim: int = 256, action_dim: int = 4, state_dim: int = 4,
                 state_mean: tuple[float, ...] | None = None, state_std: tuple[float, ...] | None = None,
                 feature_step: int = 0, image_size: int = 64, cameras: tuple[str, ...] = ("desk",),
                 num_members: int = 1, ensemble_vote: str = "mean", readout: str = "cells", num_keypoints: int = 16,
                 num_objects: int = 0, object_weight: float = 1.0, frame_keypoints: int = 0,
                 object_keypoints: int = 0):
        super().__init__()
        rows, cols = (int(v) for v in patch_grid)
        for name, value in (("feature_dim", feature_dim), ("num_frames", num_frames), ("pool", pool),
                            ("cell_dim", cell_dim), ("hidden_dim", hidden_dim), ("action_dim", action_dim),
                            ("state_dim", state_dim), ("patch_grid rows", rows), ("patch_grid columns", cols),
                            ("num_members", num_members), ("num_keypoints", num_keypoints)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if ensemble_vote not in ENSEMBLE_VOTES:
            raise ValueError(f"ensemble_vote must be one of {', '.join(ENSEMBLE_VOTES)}, got {ensemble_vote!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        if rows % pool or cols % pool:
            raise ValueError(f"patch_grid {rows}x{cols} must be divisible by pool {pool}")
        if feature_step < 0:
            raise ValueError(f"feature_step must be >= 0, got {feature_step}")
        if num_objects < 0 or object_weight < 0 or frame_keypoints < 0:
            raise ValueError(f"num_objects, object_weight and frame_keypoints must be >= 0, got {num_objects}, "
                             f"{object_weight} and {frame_keypoints}")
        if not 0 <= object_keypoints <= frame_keypoints or (object_keypoints and len(cameras) != 1):
            raise ValueError(f"object_keypoints must be between 0 and frame_keypoints ({frame_keypoints}), and "
                             f"taught on one camera's frame, got {object_keypoints} on {list(cameras)}")
        if (state_mean is None) != (state_std is None):
            raise ValueError("state_mean and state_std go together: give both or neither")
        for stats in (state_mean, state_std):
            if stats is not None and len(stats) != state_dim:
                raise ValueError(f"state statistics need state_dim = {state_dim} entries, got {len(stats)}")
        if state_std is not None and min(state_std) <= 0:
            raise ValueError(f"state_std must be positive, got {state_std}")
        self.members = nn.ModuleList(_ActionHead(feature_dim, (rows // pool, cols // pool), cell_dim, hidden_dim,
                                                 action_dim, state_dim, readout, num_keypoints, num_objects,
                                                 frame_keypoints)
                                     for _ in range(num_members))
        self.register_buffer("state_offset", torch.tensor(state_mean or [0.0] * state_dim), persistent=False)
        self.register_buffer("state_scale", torch.tensor(state_std or [1.0] * state_dim), persistent=False)

    @property
    def num_tokens(self) -> int:
        """Tokens of the VDM's output this head reads: K frames of ``patch_grid`` patches."""
        rows, cols = self.config.patch_grid
        return self.config.num_frames * rows * cols

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, K * Hp * Wp, C) VDM tokens -> (B, K, Hp / pool, Wp / pool, C), each cell the mean of its
        ``pool x pool`` patches. Training caches this, a sixteenth of the tokens for pool 2 x 2."""
        if features.ndim != 3 or features.shape[1:] != (self.num_tokens, self.config.feature_dim):
            raise ValueError(f"VDM features must have shape (B, {self.num_tokens}, {self.config.feature_dim}) "
                             f"(K x patch rows x patch columns tokens of the VDM's width), got {tuple(features.shape)}")
        b, _, c = features.shape
        (rows, cols), p = self.config.patch_grid, self.config.pool
        grid = features.view(b, self.config.num_frames, rows // p, p, cols // p, p, c)
        return grid.mean(dim=(3, 5))

    def normalized_state(self, pooled: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """(B, state_dim) proprioception, checked against the B of ``pooled`` and standardised by the
        training data's statistics, in ``pooled``'s dtype."""
        b = pooled.shape[0]
        if state.ndim != 2 or state.shape != (b, self.config.state_dim):
            raise ValueError(f"state must have shape ({b}, {self.config.state_dim}), got {tuple(state.shape)}")
        return (state.to(pooled.dtype) - self.state_offset.to(pooled.dtype)) / self.state_scale.to(pooled.dtype)

    @property
    def reads_current_frame(self) -> bool:
        """Whether the head takes the current frame as well (``frame_keypoints`` > 0)."""
        return self.config.frame_keypoints > 0

    def checked_frame(self, pooled: torch.Tensor, frame: torch.Tensor | None) -> torch.Tensor | None:
        """The (B, 3, H, W) current frame in ``pooled``'s dtype, checked against the B of ``pooled`` and
        the views the head was built for; None for a head that reads no frame."""
        if not self.reads_current_frame:
            return None
        size = self.config.image_size
        expected = (pooled.shape[0], 3, size, size * len(self.config.cameras))
        if frame is None or tuple(frame.shape) != expected:
            raise ValueError(f"this head reads the current frame ({len(self.config.cameras)} view(s) side by side): "
                             f"frame must have shape {expected}, got "
                             f"{None if frame is None else tuple(frame.shape)}")
        return frame.to(pooled.dtype)

    def member_features(self, pooled: torch.Tensor, state: torch.Tensor, frame: torch.Tensor | None = None
                        ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Each member's (B, K, hidden_dim) features and its (B, frame_keypoints, 2) keypoints of the
        current frame (None for a head that reads no frame), from the inputs as :meth:`member_actions`
        takes them."""
        normalized, frame = self.normalized_state(pooled, state), self.checked_frame(pooled, frame)
        features = []
        for member in self.members:
            keypoints = member.frame_keypoints(frame) if frame is not None else None
            features.append((member.trunk(pooled, normalized, keypoints), keypoints))
        return features

    def member_trunks(self, pooled: torch.Tensor, state: torch.Tensor,
                      frame: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each member's (B, K, hidden_dim) features, from the inputs as :meth:`member_actions` takes them."""
        return [trunk for trunk, _ in self.member_features(pooled, state, frame)]

    def actions_of_trunks(self, trunks: list[torch.Tensor]) -> torch.Tensor:
        """Each member's (B, K, hidden_dim) features, as :meth:`member_trunks` gives them -> (num_members,
        B, K, action_dim), each member's actions."""
        return torch.stack([torch.tanh(member.head(trunk)) for member, trunk in zip(self.members, trunks)])

    def member_actions(self, pooled: torch.Tensor, state: torch.Tensor,
                       frame: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, Hp / pool, Wp / pool, C) pooled features, (B, state_dim) proprioception and, for a head
        with ``frame_keypoints``, the (B, 3, H, W) current frame in [-1, 1] -> (num_members, B, K,
        action_dim), each member's actions."""
        return self.actions_of_trunks(self.member_trunks(pooled, state, frame))

    def member_object_offsets(self, pooled: torch.Tensor, state: torch.Tensor,
                              frame: torch.Tensor | None = None) -> torch.Tensor:
        """The auxiliary task's answer: (num_members, B, K, num_objects, 3), each object's centre minus
        the tool point in metres, as each member tells it (``num_objects`` > 0 only)."""
        if not self.config.num_objects:
            raise ValueError("this head was built without the object offsets task (num_objects = 0)")
        b, k = pooled.shape[:2]
        trunks = self.member_trunks(pooled, state, frame)
        return torch.stack([member.object_offsets(trunk) for member, trunk in zip(self.members, trunks)]
                           ).reshape(len(self.members), b, k, self.config.num_objects, 3) * OBJECT_OFFSET_SCALE

    def actions_from_pooled(self, pooled: torch.Tensor, state: torch.Tensor,
                            frame: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, Hp / pool, Wp / pool, C) pooled features, (B, state_dim) proprioception and the current
        frame (heads with ``frame_keypoints``) -> (B, K, action_dim), the members' plans joined by
        ``ensemble_vote``."""
        members = self.member_actions(pooled, state, frame)
        if self.config.ensemble_vote == "mean":
            return members.mean(dim=0)
        # Euclidean, not squared: the squared distances' sum is least for the member nearest the mean,
        # which is the mean's compromise again; the plain distances' sum is least inside the majority.
        flat = members.flatten(2).transpose(0, 1)  # (B, members, K * action_dim)
        distance = ((flat[:, :, None] - flat[:, None]) ** 2).sum(dim=3).sqrt().sum(dim=2)  # (B, members)
        chosen = distance.argmin(dim=1)[:, None, None, None].expand(-1, 1, *members.shape[2:])
        return members.transpose(0, 1).gather(1, chosen).squeeze(1)

    def forward(self, vdm_features: torch.Tensor, state: torch.Tensor, frame: torch.Tensor | None = None
                ) -> torch.Tensor:
        """The exported graph: (B, K * Hp * Wp, C) VDM tokens, (B, state_dim) state and, for a head with
        ``frame_keypoints``, the (B, 3, H, W) current frame in [-1, 1] -> (B, K, action_dim)."""
        return self.actions_from_pooled(self.pool_features(vdm_features), state, frame)

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Each member's mean squared error of the K actions where ``batch[ACTION_MASK]`` holds,
        averaged over the members: each learns alone, the ensemble is only their mean at run time.

        ``batch[VDM_FEATURES]`` holds pooled features (B, K, Hp / pool, Wp / pool, C), as
        :meth:`pool_features` gives them; ``batch[STATE]`` (B, state_dim) the current proprioception;
        ``batch[ACTIONS]`` (B, K, action_dim); ``batch[MEMBER_WEIGHTS]``, optional (num_members, B),
        each member's weight of each sample (a bootstrap of the data, so that members differ in what
        they saw as well as where they started); ``batch[OBJECT_OFFSETS]`` (B, K, num_objects, 3),
        needed when ``num_objects`` > 0: the auxiliary task's target, weighted by ``object_weight``;
        ``batch[CURRENT_FRAME]`` (B, 3, H, W), needed when ``frame_keypoints`` > 0;
        ``batch[OBJECT_IMAGE_XY]`` (B, object_keypoints, 2), needed when ``object_keypoints`` > 0: where
        the first keypoints should be, their squared error added with weight 1 (each member's
        sample weights apply).
        """
        actions = batch[ACTIONS]
        features = self.member_features(batch[VDM_FEATURES], batch[STATE], batch.get(CURRENT_FRAME))
        trunks = [trunk for trunk, _ in features]
        predicted = self.actions_of_trunks(trunks)
        members, b = predicted.shape[:2]
        mask = batch.get(ACTION_MASK, torch.ones(actions.shape[:2], dtype=torch.bool, device=actions.device))
        sample_weights = batch.get(MEMBER_WEIGHTS, torch.ones(members, b, device=actions.device))
        if sample_weights.shape != (members, b):
            raise ValueError(f"{MEMBER_WEIGHTS} must have shape ({members}, {b}), got {tuple(sample_weights.shape)}")
        weight = (mask.float()[None] * sample_weights.float()[:, :, None]).unsqueeze(-1)  # (members, B, K, 1)

        def weighted_mse(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            """(members, B, K, D) against (B, K, D): each member's weighted mean, averaged over members."""
            squared = ((predicted - target[None]) ** 2 * weight).sum(dim=(1, 2, 3))
            return (squared / (weight.sum(dim=(1, 2, 3)) * target.shape[-1]).clamp(min=1e-6)).mean()

        loss = action_loss = weighted_mse(predicted, actions)
        info = {"chunk_mse": action_loss.item()}
        if self.config.object_keypoints:
            if OBJECT_IMAGE_XY not in batch:
                raise ValueError(f"a head with object_keypoints = {self.config.object_keypoints} trains on "
                                 f"{OBJECT_IMAGE_XY}")
            target = batch[OBJECT_IMAGE_XY]
            found = torch.stack([keypoints[:, :self.config.object_keypoints] for _, keypoints in features])
            if target.shape != found.shape[1:]:
                raise ValueError(f"{OBJECT_IMAGE_XY} must have shape {tuple(found.shape[1:])}, "
                                 f"got {tuple(target.shape)}")
            squared = ((found - target[None]) ** 2).mean(dim=(2, 3))  # (members, B)
            per_sample = sample_weights.float()
            keypoint_loss = ((squared * per_sample).sum(dim=1) / per_sample.sum(dim=1).clamp(min=1e-6)).mean()
            loss = loss + keypoint_loss
            info["object_keypoint_mse"] = keypoint_loss.item()
        if not self.config.num_objects:
            return loss, {"loss": loss.item(), **info}
        if OBJECT_OFFSETS not in batch:
            raise ValueError(f"a head with num_objects = {self.config.num_objects} trains on {OBJECT_OFFSETS}")
        target = batch[OBJECT_OFFSETS].flatten(2) / OBJECT_OFFSET_SCALE
        told = torch.stack([member.object_offsets(trunk) for member, trunk in zip(self.members, trunks)])
        if target.shape != told.shape[1:]:
            raise ValueError(f"{OBJECT_OFFSETS} must have shape ({b}, {actions.shape[1]}, {self.config.num_objects}, "
                             f"3), got {tuple(batch[OBJECT_OFFSETS].shape)}")
        object_loss = weighted_mse(told, target)
        loss = loss + self.config.object_weight * object_loss
        return loss, {"loss": loss.item(), **info, "object_mse": object_loss.item()}

    def example_inputs(self, batch_size: int, future_frames: int) -> dict[str, torch.Tensor]:
        """Zero inputs of the exported graph's shapes, keyed by input name, for a planner of
        ``future_frames`` K."""
        if future_frames != self.config.num_frames:
            raise ValueError(f"this head reads the VDM's tokens of {self.config.num_frames} frames, the planner "
                             f"draws {future_frames}")
        inputs = {VDM_FEATURES: torch.zeros(batch_size, self.num_tokens, self.config.feature_dim),
                  "state": torch.zeros(batch_size, self.config.state_dim)}
        if self.reads_current_frame:
            size = self.config.image_size
            inputs[CURRENT_FRAME] = torch.zeros(batch_size, 3, size, size * len(self.config.cameras))
        return inputs
