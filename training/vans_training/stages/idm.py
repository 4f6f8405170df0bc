"""``idm``: inverse dynamics on expert and perturbed transitions.

Both heads of :class:`InverseDynamicsModel` learn at once from clips of the current frame and the K
frames after it: the pair head on every single transition (with proprioception), the chunk head on
the whole clip, which is what the planner feeds it from the VDM. Perturbed episodes (expert actions
plus noise) widen the actions seen beyond the expert's. The future frames are degraded a little
(noise, and blur on some clips) because the planner's frames come from a video model, not a camera.
Optional per-clip augmentations (``random_shift``, ``photometric_jitter``) move and recolour whole
clips alike, so that the actions stay right while scenes look like ones the train split never shows.
With ``generated_future_fraction``, a share of the clips carry the planner's own VDM frames (rendered
from the recorded caption, or from its VLM's) in place of the recorded future, labelled with the
recorded actions, so the head learns to act on the frames it will actually be given. On a dataset
extended by ``vans-train dagger --driver planner`` those clips start where the planner itself goes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vans_engine.constants import ACTION_MASK, ACTIONS, FRAMES, STATE
from vans_engine.models.idm import InverseDynamicsModel

from vans_training.augment import augment_clips
from vans_training.config import IDMTrainConfig
from vans_training.data import NextEventBatch, to_model_frames, train_and_valid
from vans_training.trainer import Stage


class IDMLoss(nn.Module):
    """An action model (pixel IDM or ``VideoFeatureIDM``) with its ``compute_loss`` as ``forward``, so
    that DDP synchronises its gradients."""

    def __init__(self, idm: nn.Module):
        super().__init__()
        self.idm = idm

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.idm.compute_loss(batch)


def degrade(frames: torch.Tensor, noise_std: float, blur_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise to (B, N, 3, H, W) frames in [-1, 1] and blur a share of the clips (2x down, up)."""
    b, n, c, h, w = frames.shape
    blur = torch.rand(b, generator=generator) < blur_fraction
    if blur.any():
        chosen = frames[blur].reshape(-1, c, h, w)
        blurred = F.interpolate(F.avg_pool2d(chosen, 2), size=(h, w), mode="bilinear", align_corners=False)
        frames = frames.clone()
        frames[blur] = blurred.reshape(-1, n, c, h, w)
    return (frames + noise_std * torch.randn(frames.shape, generator=generator).to(frames.device)).clamp(-1, 1)


def split_chunk_head(weights: dict[str, torch.Tensor], modes: int, generator: torch.Generator,
                     noise_std: float = 0.05) -> dict[str, torch.Tensor]:
    """A regression IDM's weights with its chunk head repeated as ``modes`` mixture modes.

    Identical modes would get identical gradients and never part, so each mode's output bias is moved
    by Gaussian noise of ``noise_std`` (before the tanh): modes that start a little apart end up
    proposing different motions where the data has them.
    """
    weights = dict(weights)
    weight, bias = weights["chunk_head.1.weight"], weights["chunk_head.1.bias"]
    weights["chunk_head.1.weight"] = weight.repeat(modes, 1)
    weights["chunk_head.1.bias"] = bias.repeat(modes) + noise_std * torch.randn(modes * bias.numel(), generator=generator)
    return weights


def add_camera_views(weights: dict[str, torch.Tensor], start_views: int, views: int) -> dict[str, torch.Tensor]:
    """An IDM's weights with its pair encoder's projection widened from ``start_views`` views to
    ``views``: the views' pooled features come one after the other, so the new views' columns are
    appended, zero, and the widened model reads its first views exactly as the started one did."""
    project = weights["encoder.project.weight"]
    per_view = project.shape[1] // start_views
    added = project.new_zeros(project.shape[0], per_view * (views - start_views))
    return {**weights, "encoder.project.weight": torch.cat([project, added], dim=1)}


def build_idm(config: IDMTrainConfig, train_state: np.ndarray, cameras: tuple[str, ...] = ("desk",)
              ) -> InverseDynamicsModel:
    """The IDM to train: random weights sized by ``config.idm``, or ``init_from``'s weights, for frames
    of the recording's ``cameras``.

    ``config.idm`` may also change a started model's architecture where the change starts out as the
    identity: ``chunk_state: true`` adds the (zero-initialised) proprioception input of the chunk
    head; ``chunk_modes: K`` turns a regression chunk head into a mixture whose K modes all start at
    its chunk, each moved by a little noise so that they can part (:func:`split_chunk_head`);
    ``cameras`` that extend the started model's (``[desk, side]`` from ``[desk]``) add views whose
    features start with zero weight (:func:`add_camera_views`). A model
    that reads proprioception normalises it by the training data's statistics, stored in its config.
    """
    settings = dict(config.idm)
    start = None
    if config.init_from:
        from vans_training.stages.vdm import resolve_component_folder

        start = InverseDynamicsModel.from_pretrained(resolve_component_folder(config.init_from, "idm"))
        settings = {**{k: v for k, v in start.config.items() if not k.startswith("_")}, **settings}
    else:
        settings.setdefault("image_size", config.image_size)
        settings.setdefault("cameras", cameras)
    if settings.get("chunk_state") and settings.get("state_mean") is None:
        settings["state_mean"] = train_state.mean(axis=0).tolist()
        settings["state_std"] = np.maximum(train_state.std(axis=0), 1e-3).tolist()
    idm = InverseDynamicsModel(**settings)
    if tuple(idm.config.cameras) != tuple(cameras):
        raise ValueError(f"the IDM reads the cameras {list(idm.config.cameras)}, the recording {config.data} has "
                         f"{list(cameras)} (idm: {{cameras: {list(cameras)}}} adds views to a started model)")
    if start is not None:
        weights = start.state_dict()
        start_cameras, cameras_now = tuple(start.config.cameras), tuple(idm.config.cameras)
        if cameras_now != start_cameras:
            if cameras_now[:len(start_cameras)] != start_cameras:
                raise ValueError(f"init_from={config.init_from!r} reads the cameras {list(start_cameras)}: a model "
                                 f"started from it may only add views after them, not read {list(cameras_now)}")
            weights = add_camera_views(weights, len(start_cameras), len(cameras_now))
        if start.config.chunk_modes == 1 and idm.config.chunk_modes > 1:
            weights = split_chunk_head(weights, idm.config.chunk_modes, generator=torch.Generator().manual_seed(config.seed))
        try:
            missing, unexpected = idm.load_state_dict(weights, strict=False)
        except RuntimeError as e:  # a tensor of another shape
            raise ValueError(f"init_from={config.init_from!r} does not fit idm={config.idm}: {e}") from e
        new_layers = [k for k in missing if k.startswith(("chunk_state_proj.", "chunk_log_std.", "chunk_mode_logits."))]
        if unexpected or len(new_layers) != len(missing):
            raise ValueError(f"init_from={config.init_from!r} does not fit idm={config.idm}: missing "
                             f"{sorted(set(missing) - set(new_layers))}, unexpected {sorted(unexpected)}")
    return idm


class IDMStage(Stage):
    name = "idm"
    config_class = IDMTrainConfig

    def __init__(self, config: IDMTrainConfig, device: torch.device):
        super().__init__(config, device)
        self.renderer = None
        if config.generated_future_model:
            from vans_engine.planner import Planner

            # ONNX Runtime: the fastest CPU path, and the exact graph the deployed planner samples with
            self.renderer = Planner.from_pretrained(config.generated_future_model)
        # the IDM sees only the current frame; the VDM that renders futures needs the planner's context
        context_frames = self.renderer.config.context_frames if self.renderer else 1
        self.train_data, self.valid_data = train_and_valid(config, context_frames=context_frames,
                                                           include_perturbed=True, successful_only=False)
        self.idm = build_idm(config, self.train_data.state, self.train_data.cameras).to(device)
        self.model = IDMLoss(self.idm)

    def render_futures(self, batch: NextEventBatch, chosen: np.ndarray, seed: int) -> NextEventBatch:
        """The batch with the planner's VDM frames as the future of the ``chosen`` samples."""
        if not chosen.any():
            return batch
        picked = np.flatnonzero(chosen)
        # captions=None: the VLM names the event, as in the deployed planner
        captions = [batch.captions[i] for i in picked] if self.config.generated_future_captions == "recorded" else None
        plans = self.renderer.plan_batch(batch.context[picked], [batch.instructions[i] for i in picked],
                                         captions=captions, seed=seed,
                                         states=batch.state[picked, 0])
        future = batch.future.copy()
        future[chosen] = np.stack([plan.frames for plan in plans])
        return dataclasses.replace(batch, future=future)

    def tensors(self, batch: NextEventBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        frames = to_model_frames(np.concatenate([batch.context[:, -1:], batch.future], axis=1), self.device)
        if generator is not None:
            frames = augment_clips(frames, self.config.random_shift, self.config.photometric_jitter, generator,
                                   views=len(self.idm.config.cameras))
            frames = torch.cat([frames[:, :1], degrade(frames[:, 1:], self.config.frame_noise,
                                                       self.config.blur_fraction, generator)], dim=1)
        return {FRAMES: frames,
                ACTIONS: torch.from_numpy(batch.actions).to(self.device),
                ACTION_MASK: torch.from_numpy(batch.action_mask).to(self.device),
                STATE: torch.from_numpy(batch.state).to(self.device)}

    def compute_loss(self, rng: np.random.Generator):
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch = self.train_data.random_batch(rng, self.config.batch_size)
        if self.renderer is not None:
            chosen = rng.random(len(batch)) < self.config.generated_future_fraction
            batch = self.render_futures(batch, chosen, seed=int(rng.integers(2**31)))
        return self.forward_model(self.tensors(batch, generator))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        batch = self.valid_data.batch(self.valid_data.fixed_indices(self.config.eval_samples))
        recorded = self.tensors(batch)
        scores = {**self.chunk_scores(recorded), "loss": float(self.idm.compute_loss(recorded)[0])}
        if self.renderer is not None:
            generated = self.render_futures(batch, np.ones(len(batch), bool), seed=0)
            scores.update({f"{name}_generated": value
                           for name, value in self.chunk_scores(self.tensors(generated)).items()})
        return scores

    def chunk_scores(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        chunk = self.idm.predict_action_chunk(batch[FRAMES], batch[STATE][:, 0])
        mask = batch[ACTION_MASK]
        error = (chunk - batch[ACTIONS])[mask]
        target = batch[ACTIONS][mask]
        # The gripper command is what grasps succeed or fail on: score its sign too.
        gripper_sign = ((chunk[..., 3][mask] > 0) == (target[:, 3] > 0)).float().mean()
        return {"chunk_mse": float((error**2).mean()), "chunk_mse_xyz": float((error[:, :3] ** 2).mean()),
                "gripper_sign_accuracy": float(gripper_sign)}

    def save_pretrained(self, path: Path) -> None:
        self.idm.save_pretrained(path)
