"""``alignment``: train the video-caption contrastive model on next-event clips.

Positives are clips and captions of the same event (any of its paraphrases); every other event in
the batch is a negative. Evaluation reports retrieval accuracy (each clip against every event's
canonical caption) and the margin between matched and mismatched similarities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vans_training.config import AlignmentConfig
from vans_training.data import NextEventBatch, to_model_frames, train_and_valid
from vans_training.metrics import sentence_embeddings
from vans_training.models.alignment import VideoCaptionAligner
from vans_training.trainer import Stage


class AlignmentStage(Stage):
    name = "alignment"
    config_class = AlignmentConfig

    def __init__(self, config: AlignmentConfig, device: torch.device):
        super().__init__(config, device)
        self.train_data, self.valid_data = train_and_valid(config)
        captions = sorted(set(self.train_data.captions) | set(self.valid_data.captions))
        self.caption_embeddings = dict(zip(captions, sentence_embeddings(captions).to(device)))
        self.model = VideoCaptionAligner(num_frames=config.future_frames, image_size=config.image_size,
                                         embed_dim=config.embed_dim, channels=tuple(config.channels)).to(device)

    def tensors(self, batch: NextEventBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = to_model_frames(batch.future, self.device)
        text = torch.stack([self.caption_embeddings[c] for c in batch.captions])
        events = np.asarray(batch.events)
        positives = torch.from_numpy(events[:, None] == events[None, :]).to(self.device)
        return frames, text, positives

    def compute_loss(self, rng: np.random.Generator):
        frames, text, positives = self.tensors(self.train_data.random_batch(rng, self.config.batch_size))
        loss = self.model.contrastive_loss(frames, text, positives)
        return loss, {"loss": loss.item(), "temperature": 1.0 / self.model.logit_scale.exp().item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        batch = self.valid_data.batch(self.valid_data.fixed_indices(self.config.eval_samples))
        frames, _, _ = self.tensors(batch)
        # One caption per event (the first one seen), so retrieval is among events, not paraphrases.
        event_caption = {}
        for event, caption in zip(batch.events, batch.captions):
            event_caption.setdefault(event, caption)
        events = sorted(event_caption)
        text = self.model.embed_text(torch.stack([self.caption_embeddings[event_caption[e]] for e in events]))
        similarity = self.model.embed_video(frames) @ text.T
        truth = torch.tensor([events.index(e) for e in batch.events], device=self.device)
        matched = similarity.gather(1, truth[:, None]).squeeze(1)
        mismatched = (similarity.sum(1) - matched) / max(1, len(events) - 1)
        return {"retrieval_top1": float((similarity.argmax(1) == truth).float().mean()),
                "matched_cosine": float(matched.mean()), "mismatched_cosine": float(mismatched.mean()),
                "num_events": float(len(events))}

    def save_pretrained(self, path: Path) -> None:
        self.model.save_pretrained(path)
