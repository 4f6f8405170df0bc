"""``grpo-vdm``: Joint-GRPO stage 2. The stage-1 VLM is frozen and writes anchor captions; the VDM
learns videos that fit them.

For each sample the frozen VLM draws an anchor caption; one whose ROUGE-L to the recorded caption is
below ``anchor_min_rouge`` is dropped and drawn again (``anchor_draws`` times, then the recorded
caption stands in), so the VDM is never rewarded for illustrating a wrong event. The VDM draws G
videos of the anchor with the SDE sampler of ``vans_training.flow_sde`` (different noise each); the
reward adds the video's similarity to the recorded clip and its alignment with the anchor caption,
minus the static-video penalty, and optionally the sim-grounded term. The loss is the clipped
objective on every stochastic step's log-probability plus a KL to the starting VDM, which for two
Gaussians of the same variance is the squared distance of their means over twice that variance.

It tunes whichever VDM ``vdm`` names: the deployed few-step student (the default), or the teacher,
to be distilled again afterwards (``vans-train distill --set teacher=runs/grpo-vdm-teacher``).

    vans-train grpo-vdm --config training/configs/grpo_vdm.yaml
"""

from __future__ import annotations

import numpy as np
import torch
from vans_engine.models.vlm import NextEventVLM

from vans_training.assemble import resolve_model_folder
from vans_training.config import GRPOVDMConfig
from vans_training.evaluate import alignment_scores
from vans_training.flow_sde import sde_rollout, step_log_probs
from vans_training.metrics import psnr, rouge_l
from vans_training.rewards import static_penalty, video_similarity
from vans_training.stages.grpo import GRPOStage, clipped_surrogate
from vans_training.stages.vdm import transformer_of, torch_generator


@torch.no_grad()
def evaluate_videos(stage: GRPOStage, denoiser, batch, steps: int) -> dict[str, float]:
    """Deterministic videos of the recorded captions at ``steps``: PSNR, video similarity, alignment and
    the static penalty."""
    noise = stage.noise(len(batch), torch.Generator().manual_seed(0))
    videos = stage.render(denoiser, batch, batch.captions, 1, steps, noise)
    current = batch.context[:, -1]
    return {"psnr": psnr(videos, batch.future),
            "video_sim": float(video_similarity(videos, batch.future, current).mean()),
            "alignment": float(alignment_scores(stage.aligner, videos, batch.captions).mean()),
            "static": float(static_penalty(videos, batch.future, current).mean())}


class VideoPolicy:
    """The VDM as a GRPO policy over SDE rollouts, with its reference (the VDM the stage started from)."""

    def __init__(self, denoiser, steps: int, noise_level: float):
        self.denoiser, self.steps, self.noise_level = denoiser, steps, noise_level
        self.reference = GRPOStage.frozen(denoiser)

    def sample(self, context: torch.Tensor, tokens: torch.Tensor, noise: torch.Tensor,
               generator: torch.Generator) -> dict:
        rollout = sde_rollout(self.denoiser, context, tokens, noise, self.steps, self.noise_level, generator)
        videos = ((rollout.videos.permute(0, 1, 3, 4, 2) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return {"context": context, "tokens": tokens, "samples": rollout.samples, "old_log_probs": rollout.log_probs,
                "videos": videos.cpu().numpy()}

    def loss(self, rollout: dict, advantages: torch.Tensor, clip_range: float,
             beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over stochastic steps of the clipped objective plus ``beta`` KL, with gradients."""
        total, kls, clips = 0.0, [], []
        stochastic = self.steps - 1
        for j in range(stochastic):
            args = (rollout["samples"], rollout["context"], rollout["tokens"], self.steps, self.noise_level, j)
            log_probs, mean, std = step_log_probs(self.denoiser, *args)
            with torch.no_grad():
                _, reference_mean, _ = step_log_probs(self.reference, *args)
            surrogate, clipped = clipped_surrogate(log_probs, rollout["old_log_probs"][:, j], advantages, clip_range)
            kl = ((mean - reference_mean) ** 2).flatten(1).mean(1) / (2 * std**2)
            total = total + (surrogate + beta * kl).mean() / stochastic
            kls.append(kl.mean().item())
            clips.append(clipped.mean().item())
        return total, {"kl": float(np.mean(kls)), "clip_fraction": float(np.mean(clips))}


class GRPOVDMStage(GRPOStage):
    name = "grpo-vdm"
    config_class = GRPOVDMConfig

    def __init__(self, config: GRPOVDMConfig, device: torch.device):
        super().__init__(config, device)
        self.anchor_vlm = (NextEventVLM.from_pretrained(resolve_model_folder(config.vlm, "tokenizer.json"))
                           if config.vlm else self.planner.vlm).to(device)
        self.anchor_vlm.model.requires_grad_(False).eval()
        self.model = self.load_denoiser(config.vdm, config.prediction)
        self.policy = VideoPolicy(self.model, config.sde_steps, config.noise_level)

    def anchor_captions(self, batch, seed: int) -> tuple[list[str], float]:
        """One anchor caption per sample (see the module docstring) and the share that fell back."""
        groups = self.anchor_vlm.generate_captions_batch(list(batch.context), batch.instructions,
                                                         num_samples=self.config.anchor_draws, do_sample=True,
                                                         seed=seed, states=batch.state[:, 0])
        anchors = []
        for drawn, recorded in zip(groups, batch.captions):
            kept = [c for c in drawn if rouge_l(c, recorded) >= self.config.anchor_min_rouge]
            anchors.append(kept[0] if kept else recorded)
        fallback = float(np.mean([a == r and a not in d for a, r, d in zip(anchors, batch.captions, groups)]))
        return anchors, fallback

    def rollout(self, rng: np.random.Generator) -> dict:
        g = self.config.group_size
        batch, indices = self.draw_samples(rng)
        anchors, fallback = self.anchor_captions(batch, int(rng.integers(2**31)))
        captions = [a for a in anchors for _ in range(g)]
        context = self.context(batch, g)
        generator = torch_generator(rng)
        rollout = self.policy.sample(context, self.tokens(captions), self.noise(len(captions), generator), generator)
        terms = self.video_terms(rollout["videos"], captions, batch, indices, g)
        rollout["log"] = {"anchor_fallback": fallback}
        rollout["advantages"] = self.advantages(terms, rollout["log"])
        return rollout

    def policy_loss(self, rollout: dict):
        return self.policy.loss(rollout, rollout["advantages"], self.config.clip_range, self.config.beta)

    def evaluate(self) -> dict[str, float]:
        batch = self.valid_data.batch(self.valid_data.fixed_indices(self.config.eval_samples))
        return evaluate_videos(self, self.model, batch, self.config.eval_steps)

    def save_pretrained(self, path) -> None:
        transformer_of(self.model).save_pretrained(path)
