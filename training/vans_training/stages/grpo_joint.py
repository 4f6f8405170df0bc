"""``grpo-joint``: the "all-in-one" ablation of VANS. VLM and VDM are updated together in one stage.

Each rollout is a caption sampled from the VLM and a video of it sampled from the VDM's SDE (fresh
noise per rollout); its reward adds every caption and video term of the two stages, and the one
advantage drives both policies' losses. VANS found this worse than the two stages, because a rollout's
reward mixes the caption's and the video's merits and neither model can tell which was its own; the
ablation table in MODEL_CARD.md measures it here.

    vans-train grpo-joint --config training/configs/grpo_joint.yaml
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vans_training.config import GRPOJointConfig
from vans_training.stages.grpo import GRPOStage
from vans_training.stages.grpo_vdm import VideoPolicy, evaluate_videos
from vans_training.stages.grpo_vlm import CaptionPolicy, GRPOVLMStage, evaluate_captions
from vans_training.stages.vdm import transformer_of, torch_generator


class GRPOJointStage(GRPOVLMStage):
    name = "grpo-joint"
    config_class = GRPOJointConfig

    def __init__(self, config: GRPOJointConfig, device: torch.device):
        GRPOStage.__init__(self, config, device)
        self.vlm = self.planner.vlm.to(device)
        self.denoiser = self.load_denoiser(config.vdm, config.prediction)
        self.model = nn.ModuleDict({"vlm": self.vlm.model, "vdm": self.denoiser})
        self.policy = CaptionPolicy(self.vlm, config.temperature, config.max_new_tokens)
        self.video_policy = VideoPolicy(self.denoiser, config.sde_steps, config.noise_level)

    def rollout(self, rng: np.random.Generator) -> dict:
        rollout, batch, indices = self.caption_rollout(rng)
        g = self.config.group_size
        generator = torch_generator(rng)
        context = self.context(batch, g)
        video = self.video_policy.sample(context, self.tokens(rollout["captions"]),
                                         self.noise(len(rollout["captions"]), generator), generator)
        terms = {**rollout["terms"], **self.video_terms(video["videos"], rollout["captions"], batch, indices, g)}
        rollout["video"] = video
        rollout["advantages"] = self.advantages(terms, rollout["log"])
        return rollout

    def policy_loss(self, rollout: dict):
        caption_loss, caption_log = self.policy.loss(rollout, self.config.clip_range, self.config.beta)
        video_loss, video_log = self.video_policy.loss(rollout["video"], rollout["advantages"], self.config.clip_range,
                                                       self.config.beta)
        return caption_loss + video_loss, {"caption_loss": caption_loss.item(), "video_loss": video_loss.item(),
                                           **{f"caption_{k}": v for k, v in caption_log.items()},
                                           **{f"video_{k}": v for k, v in video_log.items()}}

    def evaluate(self) -> dict[str, float]:
        batch = self.valid_data.batch(self.valid_data.fixed_indices(self.config.eval_samples))
        return {**evaluate_captions(self.vlm, batch, self.config.max_new_tokens),
                **evaluate_videos(self, self.denoiser, batch, self.config.eval_steps)}

    def save_pretrained(self, path) -> None:
        """``path/vlm`` and ``path/vdm``, the two tuned components (``vans-train assemble`` takes each)."""
        self.vlm.save_pretrained(Path(path) / "vlm")
        transformer_of(self.denoiser).save_pretrained(Path(path) / "vdm")
