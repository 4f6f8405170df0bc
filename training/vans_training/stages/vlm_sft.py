"""``vlm-sft``: the VLM learns to name the next event from the context frames and the instruction.

Cross-entropy on the caption tokens only (the prompt is masked), teacher forcing. The tokenizer is a
byte-level BPE trained on every task's instruction and event captions (from ``vans_sim.tasks``, so it
covers events a dataset happens to lack). ``init_from`` fine-tunes a trained VLM instead, with its own
tokenizer: a DAgger round's branches are then learnt without drawing a new model from scratch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from vans_engine.models.vlm import NextEventVLM, train_caption_tokenizer

from vans_training.assemble import resolve_model_folder
from vans_training.config import VLMSFTConfig
from vans_training.data import task_corpus, train_and_valid
from vans_training.metrics import caption_scores
from vans_training.trainer import Stage


class VLMSFTStage(Stage):
    name = "vlm-sft"
    config_class = VLMSFTConfig

    def __init__(self, config: VLMSFTConfig, device: torch.device):
        super().__init__(config, device)
        self.train_data, self.valid_data = train_and_valid(config, expert_branches=config.expert_branches)
        if config.init_from:
            self.vlm = NextEventVLM.from_pretrained(resolve_model_folder(config.init_from, "tokenizer.json")).to(device)
            if self.vlm.reads_state != config.reads_state:
                raise ValueError(f"reads_state is {config.reads_state} but the VLM at {config.init_from} was "
                                 f"trained with reads_state {self.vlm.reads_state}")
        else:
            tokenizer = train_caption_tokenizer(task_corpus() + self.train_data.caption_corpus(), config.vocab_size)
            self.vlm = NextEventVLM.from_config(tokenizer, reads_state=config.reads_state, **config.vlm).to(device)
        self.model = self.vlm.model

    def _loss(self, batch, model) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = self.vlm.build_inputs(list(batch.context), batch.instructions, batch.captions,
                                       states=batch.state[:, 0])
        loss = model(**inputs).loss
        return loss, {"loss": loss.item()}

    def compute_loss(self, rng: np.random.Generator):
        return self._loss(self.train_data.random_batch(rng, self.config.batch_size), self.forward_model)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        indices = self.valid_data.fixed_indices(self.config.eval_samples)
        losses, predictions, references = [], [], []
        for chunk in np.array_split(indices, max(1, len(indices) // 32)):
            batch = self.valid_data.batch(chunk)
            losses.append(self._loss(batch, self.model)[0].item())
            captions = self.vlm.generate_captions_batch(list(batch.context), batch.instructions, max_new_tokens=20,
                                                        states=batch.state[:, 0])
            predictions += [c[0] for c in captions]
            references += batch.captions
        scores = caption_scores(predictions, references, with_similarity=False)
        return {"loss": float(np.mean(losses)), **scores}

    def save_pretrained(self, path: Path) -> None:
        self.vlm.save_pretrained(path)
