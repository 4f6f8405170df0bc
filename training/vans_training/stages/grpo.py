"""What the Joint-GRPO stages share: group advantages, the clipped objective, the KL term, the
components of the planner being tuned, and the reward terms of a rollout.

GRPO (Shao et al., 2024) in five lines, as every stage here runs it:

1. draw a batch of next-event samples and, for each, a group of G rollouts from the policy;
2. score every rollout (``vans_training.rewards``, optionally ``vans_training.sim_reward``) and add
   the weighted terms into one reward;
3. advantage = (reward - group mean) / group std: a rollout is judged only against its siblings;
4. loss = -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) + beta KL(policy || reference), with ratio
   the policy's probability of the rollout over its probability when it was drawn;
5. repeat step 4 ``updates_per_rollout`` times on the same rollouts, then draw new ones.

A resumed run starts with fresh rollouts; everything else resumes as in every stage.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from vans_engine.models.vdm import VideoDiffusionSampler, as_denoiser, load_vdm, make_scheduler
from vans_engine.planner import Planner

from vans_training.config import GRPOConfig
from vans_training.data import NextEventBatch, to_model_frames, train_and_valid
from vans_training.evaluate import alignment_scores
from vans_training.models.alignment import VideoCaptionAligner
from vans_training.rewards import combine, static_penalty, video_similarity
from vans_training.stages.vdm import resolve_vdm_folder, trained_prediction
from vans_training.stages.vdm import CaptionTokens
from vans_training.trainer import Stage

ADVANTAGE_EPS = 1e-4


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(B, G) rewards -> (B, G) advantages, normalised within each group; a group whose rollouts all
    scored the same gets zeros (nothing to learn from it)."""
    mean, std = rewards.mean(1, keepdim=True), rewards.std(1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + ADVANTAGE_EPS)


def clipped_surrogate(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                      clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a loss (to minimise), elementwise, and whether the clip was active."""
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped, clipped = ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped).float()


def k3_kl(log_probs: torch.Tensor, reference_log_probs: torch.Tensor) -> torch.Tensor:
    """Schulman's unbiased, non-negative estimator of KL(policy || reference) from samples of the policy."""
    delta = reference_log_probs - log_probs
    return torch.exp(delta) - delta - 1


class GRPOStage(Stage):
    """Loads the planner checkpoint ``config.model``, the data, the alignment model and the rewards,
    and runs the rollout-reuse schedule of step 5. A subclass provides :meth:`rollout` and
    :meth:`policy_loss`."""

    config: GRPOConfig

    def __init__(self, config: GRPOConfig, device: torch.device):
        super().__init__(config, device)
        self.train_data, self.valid_data = train_and_valid(config)
        self.planner = Planner.from_pretrained(config.model, backend="torch")
        self.tokens = CaptionTokens(device)
        self.aligner = VideoCaptionAligner.from_pretrained(Path(config.model) / "alignment").eval()
        self.idm = self.planner.idm.to(device).eval()
        self.sim_reward = None
        if config.reward_weights.get("sim"):
            from vans_engine.models.idm import require_frame_reader

            from vans_training.sim_reward import SimGroundedReward

            require_frame_reader(self.idm, Path(config.model) / "idm", "the sim-grounded reward")
            self.sim_reward = SimGroundedReward(self.train_data)
        self.rollout_cache, self.rollout_uses = None, 0

    # -- components ----------------------------------------------------------------------------------

    def load_denoiser(self, folder: str, prediction: str):
        """The VDM at ``folder`` (empty: the planner's), read as ``prediction``; checked against what it
        was trained with."""
        if not folder:
            trained_with, transformer = self.planner.config.vdm_prediction, copy.deepcopy(self.planner.vdm)
        else:
            path = resolve_vdm_folder(folder)
            trained_with, transformer = trained_prediction(path), load_vdm(path)
        if trained_with is not None and trained_with != prediction:
            raise ValueError(f"prediction is {prediction!r} but the VDM {folder or self.config.model} was trained "
                             f"with {trained_with!r}")
        return as_denoiser(transformer.to(self.device).float(), prediction)

    @staticmethod
    def frozen(module: torch.nn.Module) -> torch.nn.Module:
        return copy.deepcopy(module).requires_grad_(False).eval()

    @torch.no_grad()
    def render(self, denoiser, batch: NextEventBatch, captions: list[str], repeats: int, steps: int,
               noise: torch.Tensor) -> np.ndarray:
        """(B * repeats, K, S, S, 3) uint8 videos of ``captions`` (B * repeats, grouped by sample) with
        the deterministic sampler, from ``noise``."""
        context = self.context(batch, repeats)
        sampler = VideoDiffusionSampler(denoiser, make_scheduler(), num_frames=self.config.future_frames,
                                        image_size=tuple(context.shape[-2:]))
        frames = sampler(context, self.tokens(captions), num_inference_steps=steps, latents=noise,
                         output_type="uint8").frames
        return frames.permute(0, 1, 3, 4, 2).cpu().numpy()

    def context(self, batch: NextEventBatch, repeats: int) -> torch.Tensor:
        """The batch's context clips on the device, each repeated for its group."""
        return to_model_frames(batch.context, self.device).repeat_interleave(repeats, dim=0)

    def noise(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((count, 3, self.config.future_frames, *self.train_data.frame_size),
                           generator=generator).to(self.device)

    # -- rewards --------------------------------------------------------------------------------------

    def video_terms(self, videos: np.ndarray, captions: list[str], batch: NextEventBatch, indices: np.ndarray,
                    repeats: int) -> dict[str, np.ndarray]:
        """Every video reward term of (B * repeats) videos of the batch's samples (grouped by sample)."""
        truth = batch.future.repeat(repeats, axis=0)
        current = batch.context[:, -1].repeat(repeats, axis=0)
        terms = {"video_sim": video_similarity(videos, truth, current),
                 "static": static_penalty(videos, truth, current)}
        if self.config.reward_weights.get("alignment"):
            terms["alignment"] = (alignment_scores(self.aligner, videos, captions) + 1.0) / 2.0
        if self.sim_reward is not None:
            terms["sim"] = self.sim_actions_reward(videos, batch, indices, repeats)
        return terms

    @torch.no_grad()
    def sim_actions_reward(self, videos: np.ndarray, batch: NextEventBatch, indices: np.ndarray,
                           repeats: int) -> np.ndarray:
        """The sim-grounded term: the IDM's actions from each video, run in the simulator from the sample's state."""
        current = batch.context[:, -1:].repeat(repeats, axis=0)
        clips = to_model_frames(np.concatenate([current, videos], axis=1), self.device)
        states = torch.from_numpy(batch.state[:, 0].repeat(repeats, axis=0)).to(self.device)
        chunks = self.idm.predict_action_chunk(clips, states).float().cpu().numpy()
        output = self.sim_reward(indices, chunks.reshape(len(indices), repeats, *chunks.shape[1:]))
        return np.asarray(output.rewards, np.float64).reshape(-1)

    # -- the GRPO schedule ----------------------------------------------------------------------------

    def rollout(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def policy_loss(self, rollout: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def compute_loss(self, rng: np.random.Generator):
        if self.rollout_cache is None or self.rollout_uses >= self.config.updates_per_rollout:
            self.rollout_cache, self.rollout_uses = self.rollout(rng), 0
        self.rollout_uses += 1
        loss, info = self.policy_loss(self.rollout_cache)
        return loss, {**info, **self.rollout_cache["log"], "loss": loss.item()}

    def draw_samples(self, rng: np.random.Generator) -> tuple[NextEventBatch, np.ndarray]:
        indices = rng.integers(0, len(self.train_data), self.config.batch_size)
        return self.train_data.batch(indices), indices

    def advantages(self, terms: dict[str, np.ndarray], log: dict[str, float]) -> torch.Tensor:
        """The weighted reward of each rollout -> group advantages (B * G,); logs each term's mean."""
        reward = combine(terms, self.config.reward_weights)
        log.update({f"reward_{name}": float(np.mean(value)) for name, value in terms.items()})
        log["reward"] = float(np.mean(reward))
        grouped = torch.as_tensor(reward, dtype=torch.float32).view(-1, self.config.group_size)
        log["reward_group_std"] = float(grouped.std(1, unbiased=False).mean())
        return group_advantages(grouped).reshape(-1).to(self.device)
