"""``grpo-vlm``: Joint-GRPO stage 1. The VDM is frozen; the VLM learns to write captions whose videos fit.

For each sample the VLM draws G captions; the frozen VDM renders each one from the same noise (so
siblings differ only by their caption); the reward adds ROUGE-L and MiniLM similarity to the recorded
caption, the format term and the video's similarity to the recorded clip (``vans_training.rewards``),
and optionally the sim-grounded term. The loss is GRPO's per-token clipped objective with a k3 KL to
the SFT VLM, averaged over each caption's tokens and then over captions.

    vans-train grpo-vlm --config training/configs/grpo_vlm.yaml
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from vans_engine.models.vlm.modeling_vlm import IGNORE_INDEX

from vans_training.config import GRPOVLMConfig
from vans_training.evaluate import event_scores
from vans_training.metrics import caption_scores
from vans_training.rewards import caption_rewards
from vans_training.stages.grpo import GRPOStage, clipped_surrogate, k3_kl
from vans_training.stages.vdm import torch_generator


def caption_token_log_probs(vlm, model: torch.nn.Module, clips: list[np.ndarray], instructions: list[str],
                            captions: list[str], states: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every caption token (and the closing ``<|im_end|>``) under ``model``:
    ``(N, L)`` values and a ``(N, L)`` mask of the positions that are caption tokens. ``states``
    (N, 4) is the proprioception a VLM that reads it was prompted with."""
    inputs = vlm.build_inputs(clips, instructions, captions, allow_empty_captions=True, states=states)
    labels = inputs.pop("labels")
    logits = model(**inputs).logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    log_probs = torch.gather(F.log_softmax(logits, -1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return log_probs * mask, mask


def caption_policy_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, reference_log_probs: torch.Tensor,
                        mask: torch.Tensor, advantages: torch.Tensor, clip_range: float,
                        beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss over (N, L) token log-probabilities; ``advantages`` (N,) per caption."""
    surrogate, clipped = clipped_surrogate(log_probs, old_log_probs, advantages[:, None], clip_range)
    kl = k3_kl(log_probs, reference_log_probs)
    per_caption = ((surrogate + beta * kl) * mask).sum(1) / mask.sum(1).clamp(min=1)
    tokens = mask.sum().clamp(min=1)
    kl, clipped = kl.detach(), clipped.detach()
    return per_caption.mean(), {"kl": float((kl * mask).sum() / tokens), "clip_fraction": float((clipped * mask).sum() / tokens)}


@torch.no_grad()
def evaluate_captions(vlm, batch, max_new_tokens: int) -> dict[str, float]:
    """Greedy captions of a batch: ROUGE-L, BLEU-4, MiniLM similarity, event accuracy."""
    groups = vlm.generate_captions_batch(list(batch.context), batch.instructions, max_new_tokens=max_new_tokens,
                                         states=batch.state[:, 0])
    captions = [g[0] for g in groups]
    return {**caption_scores(captions, batch.captions), **event_scores(captions, batch.events)}


class CaptionPolicy:
    """The VLM as a GRPO policy: its captions, their token log-probabilities now, when drawn and under
    the reference (the VLM the stage started from)."""

    def __init__(self, vlm, temperature: float, max_new_tokens: int):
        self.vlm, self.temperature, self.max_new_tokens = vlm, temperature, max_new_tokens
        self.reference = GRPOStage.frozen(vlm.model)

    def sample(self, clips: list[np.ndarray], instructions: list[str], states: np.ndarray, group_size: int,
               seed: int) -> list[str]:
        """G captions per clip, flat and grouped by clip; ``states`` (B, 4), one per clip."""
        self.vlm.model.eval()  # no dropout while drawing: the rollout is the policy's own
        groups = self.vlm.generate_captions_batch(clips, instructions, num_samples=group_size, do_sample=True,
                                                  temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                                                  seed=seed, states=states)
        self.vlm.model.train()
        return [caption for group in groups for caption in group]

    def token_counts(self, captions: list[str]) -> list[int]:
        return [len(self.vlm.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in captions]

    @torch.no_grad()
    def old_and_reference_log_probs(self, clips, instructions, captions, states) -> tuple[torch.Tensor, torch.Tensor]:
        old, _ = caption_token_log_probs(self.vlm, self.vlm.model, clips, instructions, captions, states)
        reference, _ = caption_token_log_probs(self.vlm, self.reference, clips, instructions, captions, states)
        return old, reference

    def loss(self, rollout: dict, clip_range: float, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
        log_probs, mask = caption_token_log_probs(self.vlm, self.vlm.model, rollout["clips"], rollout["instructions"],
                                                  rollout["captions"], rollout["states"])
        return caption_policy_loss(log_probs, rollout["old_log_probs"], rollout["reference_log_probs"], mask,
                                   rollout["advantages"], clip_range, beta)


class GRPOVLMStage(GRPOStage):
    name = "grpo-vlm"
    config_class = GRPOVLMConfig

    def __init__(self, config: GRPOVLMConfig, device: torch.device):
        super().__init__(config, device)
        self.vlm = self.planner.vlm.to(device)
        self.model = self.vlm.model
        self.policy = CaptionPolicy(self.vlm, config.temperature, config.max_new_tokens)
        self.renderer = self.frozen(self.load_denoiser("", self.planner.config.vdm_prediction))

    def caption_rollout(self, rng: np.random.Generator) -> tuple[dict, object, np.ndarray]:
        """Draw samples and G captions each; the rollout's inputs and the caption reward terms."""
        g = self.config.group_size
        batch, indices = self.draw_samples(rng)
        clips = [c for c in batch.context for _ in range(g)]
        instructions = [i for i in batch.instructions for _ in range(g)]
        current = batch.state[:, 0]  # proprioception at each clip's last frame
        states = np.repeat(current, g, axis=0)
        captions = self.policy.sample(list(batch.context), batch.instructions, current, g, int(rng.integers(2**31)))
        references = [c for c in batch.captions for _ in range(g)]
        terms = caption_rewards(captions, references, self.policy.token_counts(captions), self.config.max_new_tokens)
        old, reference = self.policy.old_and_reference_log_probs(clips, instructions, captions, states)
        rollout = {"clips": clips, "instructions": instructions, "states": states, "captions": captions,
                   "old_log_probs": old, "reference_log_probs": reference, "terms": terms, "log": {}}
        return rollout, batch, indices

    def rollout(self, rng: np.random.Generator) -> dict:
        rollout, batch, indices = self.caption_rollout(rng)
        g = self.config.group_size
        # one noise per sample, shared by its G captions: siblings differ by their caption alone
        noise = self.noise(len(batch), torch_generator(rng)).repeat_interleave(g, dim=0)
        videos = self.render(self.renderer, batch, rollout["captions"], g, self.config.render_steps, noise)
        terms = {**rollout["terms"], **self.video_terms(videos, rollout["captions"], batch, indices, g)}
        rollout["advantages"] = self.advantages(terms, rollout["log"])
        rollout["log"]["distinct_captions"] = len(set(rollout["captions"])) / len(rollout["captions"])
        return rollout

    def policy_loss(self, rollout: dict):
        return self.policy.loss(rollout, self.config.clip_range, self.config.beta)

    def evaluate(self) -> dict[str, float]:
        batch = self.valid_data.batch(self.valid_data.fixed_indices(self.config.eval_samples))
        return evaluate_captions(self.vlm, batch, self.config.max_new_tokens)

    def save_pretrained(self, path) -> None:
        self.vlm.save_pretrained(path)
