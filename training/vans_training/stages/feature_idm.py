"""``feature-idm``: an action head on the planner's VDM tokens (``VideoFeatureIDM``).

The planner's frozen VDM denoises each training sample's context and recorded caption on its own
sampler (the checkpoint's scheduler and step count, one seeded noise draw per sample) and the head
learns the recorded K actions from the transformer's tokens at ``feature_step``, plus the
proprioception at the current frame. The VDM never changes here, so its tokens are computed once,
pooled as the head pools them, and cached in ``OUTPUT_DIR/feature_cache.pt``: a resumed run reads
them back instead of running the VDM again.

A head of several members (``head: {num_members: M}``, an ensemble) trains them side by side on the
same batches, each sample weighted for each member by a draw from Poisson(1): the online bootstrap,
so that the members differ in the data they saw as well as in their initial weights.

With ``object_weight`` > 0 the head also learns where each object stands relative to the tool point
(``VideoFeatureIDM``'s auxiliary task); validation then reports that error in centimetres.

A head with ``frame_keypoints`` (under ``head``) also reads each sample's current frame, the last
context frame, recoloured in training by ``photometric_jitter``: held-out desks are lit and coloured
outside the train split's values, and the keypoints should follow the objects, not the colours.
With ``object_keypoints`` (under ``head``) the first keypoints also learn where the desk camera
shows each object (``vans_sim.scene.project_to_desk_image`` of the recorded object state);
validation then reports their error in pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from vans_engine.constants import ACTION_MASK, ACTIONS, OBJECT_IMAGE_XY, OBJECT_OFFSETS, STATE
from vans_engine.models.idm import CURRENT_FRAME, MEMBER_WEIGHTS, VDM_FEATURES, VideoFeatureIDM
from vans_engine.models.vdm.features import DenoiserWithFeatures, token_layout
from vans_engine.models.vdm.parameterization import as_denoiser
from vans_engine.models.vdm.sampling import pack_model_input
from vans_sim.scene import project_to_desk_image

from vans_training.augment import jitter_photometry
from vans_training.config import FeatureIDMTrainConfig
from vans_training.data import NextEventData, to_model_frames, train_and_valid
from vans_training.stages.idm import IDMLoss
from vans_training.trainer import Stage

FEATURE_CACHE = "feature_cache.pt"


class FeatureIDMStage(Stage):
    name = "feature-idm"
    config_class = FeatureIDMTrainConfig

    def __init__(self, config: FeatureIDMTrainConfig, device: torch.device):
        super().__init__(config, device)
        from vans_engine.planner import Planner

        self.planner = Planner.from_pretrained(config.vdm_model, backend="torch")
        planner_config = self.planner.config
        if config.feature_step >= planner_config.num_inference_steps:
            raise ValueError(f"feature_step {config.feature_step} is past the {planner_config.num_inference_steps} "
                             f"denoising steps of {config.vdm_model}")
        self.train_data, self.valid_data = train_and_valid(config, context_frames=planner_config.context_frames,
                                                           expert_branches=config.expert_branches,
                                                           full_speed_actions=config.full_speed_actions)
        state = self.train_data.state
        objects = {"num_objects": self.train_data.object_pos.shape[1], "object_weight": config.object_weight
                   } if config.object_weight > 0 else {}
        self.head = VideoFeatureIDM(
            **token_layout(self.planner.vdm.config, planner_config.frame_size, planner_config.future_frames),
            state_mean=state.mean(axis=0).tolist(),
            state_std=np.maximum(state.std(axis=0), 1e-3).tolist(), feature_step=config.feature_step,
            image_size=planner_config.image_size, cameras=planner_config.cameras, **objects, **config.head).to(device)
        self.model = IDMLoss(self.head)  # its loss as forward, so that DDP synchronises the gradients
        self.train_cache = self.valid_cache = None

    # -- the VDM's tokens, once -----------------------------------------------------------------------

    def prepare(self, output_dir: Path, rank: int, world_size: int) -> None:
        cache_file = output_dir / FEATURE_CACHE
        valid_indices = self.valid_data.fixed_indices(self.config.eval_samples)
        if cache_file.is_file():
            cache = torch.load(cache_file)
        else:
            cache = {"train": self.vdm_tokens(self.train_data, np.arange(len(self.train_data)), "train"),
                     "valid": self.vdm_tokens(self.valid_data, valid_indices, "valid")}
            if rank == 0:
                torch.save(cache, cache_file)
        self.train_cache, self.valid_cache = cache["train"], cache["valid"]
        self.valid_indices = valid_indices

    @torch.no_grad()
    def vdm_tokens(self, data: NextEventData, indices: np.ndarray, name: str) -> torch.Tensor:
        """Pooled tokens (N, K, rows, cols, C) in float16 of the samples at ``indices``, each from the
        noise drawn with its index as seed: the planner's denoising steps up to ``feature_step``."""
        denoiser = DenoiserWithFeatures(as_denoiser(self.planner.vdm, self.planner.config.vdm_prediction))
        scheduler = self.planner.scheduler
        pooled = []
        chunk = self.config.feature_batch_size
        for start in tqdm(range(0, len(indices), chunk), desc=f"VDM tokens ({name})", dynamic_ncols=True):
            picked = indices[start:start + chunk]
            batch = data.batch(picked)
            context = to_model_frames(batch.context, self.device)
            tokens = torch.stack([self.planner._encode_caption(c) for c in batch.captions]).to(self.device)
            sample = torch.stack([torch.randn(3, self.planner.config.future_frames, *context.shape[-2:],
                                              generator=torch.Generator().manual_seed(int(i))) for i in picked])
            sample = sample.to(self.device)
            scheduler.set_timesteps(self.planner.config.num_inference_steps)
            for step, t in enumerate(scheduler.timesteps[:self.config.feature_step + 1]):
                velocity, features = denoiser(hidden_states=pack_model_input(sample, context),
                                              timestep=t.expand(len(picked)).to(self.device),
                                              encoder_hidden_states=tokens)
                sample = scheduler.step(velocity, t, sample, return_dict=False)[0]
            pooled.append(self.head.pool_features(features.float()).half().cpu())
        return torch.cat(pooled)

    # -- training ---------------------------------------------------------------------------------------

    def tensors(self, data: NextEventData, indices: np.ndarray, features: torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The head's batch of the samples at ``indices``; with a ``generator`` (training), the current
        frame recoloured by ``photometric_jitter``."""
        batch = data.batch(indices)
        tensors = {VDM_FEATURES: features.float().to(self.device),
                   ACTIONS: torch.from_numpy(batch.actions).to(self.device),
                   ACTION_MASK: torch.from_numpy(batch.action_mask).to(self.device),
                   STATE: torch.from_numpy(batch.state[:, 0]).to(self.device)}
        if self.head.config.num_objects:
            offsets = batch.object_pos - batch.state[:, :, None, :3]
            tensors[OBJECT_OFFSETS] = torch.from_numpy(offsets).to(self.device)
        if self.head.reads_current_frame:
            frame = to_model_frames(batch.context[:, -1:], self.device)  # (B, 1, 3, H, W)
            if generator is not None and self.config.photometric_jitter:
                frame = jitter_photometry(frame, self.config.photometric_jitter, generator)
            tensors[CURRENT_FRAME] = frame[:, 0]
        if self.head.config.object_keypoints:
            places = project_to_desk_image(batch.object_pos[:, 0, :self.head.config.object_keypoints])
            tensors[OBJECT_IMAGE_XY] = torch.from_numpy(places).float().to(self.device)
        return tensors

    def compute_loss(self, rng: np.random.Generator):
        picked = rng.integers(0, len(self.train_data), self.config.batch_size)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch = self.tensors(self.train_data, picked, self.train_cache[picked], generator)
        if self.head.config.num_members > 1:
            weights = rng.poisson(1.0, (self.head.config.num_members, len(picked)))
            batch[MEMBER_WEIGHTS] = torch.from_numpy(weights).float().to(self.device)
        return self.forward_model(batch)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        batch = self.tensors(self.valid_data, self.valid_indices, self.valid_cache)
        features = self.head.member_features(batch[VDM_FEATURES], batch[STATE], batch.get(CURRENT_FRAME))
        members = self.head.actions_of_trunks([trunk for trunk, _ in features])
        mask = batch[ACTION_MASK]
        error = (members.mean(dim=0) - batch[ACTIONS])[mask]
        metrics = {"chunk_mse": float((error**2).mean()), "chunk_mse_xyz": float((error[:, :3] ** 2).mean())}
        if len(members) > 1:  # what one member alone scores, to see what the mean adds
            member_error = (members - batch[ACTIONS][None])[:, mask]
            metrics["member_chunk_mse"] = float((member_error**2).mean())
        if self.head.config.num_objects:  # how far off each object is told, root mean square over x, y, z
            told = self.head.member_object_offsets(batch[VDM_FEATURES], batch[STATE], batch.get(CURRENT_FRAME)
                                                   ).mean(dim=0)
            squared = ((told - batch[OBJECT_OFFSETS]) ** 2)[mask].sum(dim=-1)  # (samples, objects)
            metrics["object_rms_cm"] = float(squared.mean().sqrt()) * 100
        if self.head.config.object_keypoints:  # how far the taught keypoints sit from the objects, in pixels
            found = torch.stack([keypoints[:, :self.head.config.object_keypoints] for _, keypoints in features])
            pixels = (found - batch[OBJECT_IMAGE_XY][None]).norm(dim=-1) * self.head.config.image_size / 2
            metrics["object_keypoint_px"] = float(pixels.mean())
        return metrics

    def save_pretrained(self, path: Path) -> None:
        self.head.save_pretrained(path)
