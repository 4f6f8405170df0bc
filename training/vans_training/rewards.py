"""Joint-GRPO's rewards: each term is a number per generated caption or video, scaled to [0, 1].

Caption terms (stage 1, ``grpo-vlm``), against the recorded next-event caption:

* ``rouge_l``: ROUGE-L F-measure;
* ``caption_sim``: MiniLM cosine similarity, clamped at 0;
* ``format``: 1 when the caption is a finished sentence made only of the task vocabulary's words (the
  VLM stopped by itself before ``max_new_tokens`` and wrote no word the simulator's captions never
  use), else 0.

Video terms (both stages), against the recorded K frames of the event:

* ``video_sim``: ``E_hold / (E_hold + E_pred)`` where ``E_pred`` is the video's mean squared error to
  the recorded clip and ``E_hold`` that of the current frame held K times: 0.5 is "as good as nothing
  moving", 1 is exact. Most of a desk frame does not move, so SSIM or PSNR of the whole frame barely
  separate a right motion from a wrong one; this ratio is relative to what the event changes;
* ``alignment``: cosine of the video and the caption it was generated for under the video-caption
  model (``MODEL/alignment/``, ``vans_training.evaluate.alignment_scores``), mapped from [-1, 1] to [0, 1];
* ``static``: a penalty, ``1 - motion(video) / motion(recorded)`` clipped to [0, 1], where motion is
  the mean absolute change from the current frame: a video that holds or copies the context while
  the recorded event moves is penalised (VANS saw its VDM collapse to static frames without it).
  Events whose recorded clip barely moves are not penalised.

The sim-grounded term is in :mod:`vans_training.sim_reward`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from vans_training.data import task_corpus
from vans_training.metrics import caption_similarities, rouge_l, tokenize

# Below this mean absolute change (in [0, 1] pixel units) a recorded clip counts as not moving.
MIN_MOTION = 2e-3


@lru_cache(maxsize=1)
def task_vocabulary() -> frozenset[str]:
    """Every word of every instruction and caption the simulator's tasks use."""
    return frozenset(word for text in task_corpus() for word in tokenize(text))


def format_reward(captions: list[str], token_counts: list[int], max_new_tokens: int) -> np.ndarray:
    """1 for a finished caption in the task vocabulary, 0 otherwise."""
    vocabulary = task_vocabulary()
    return np.asarray([float(bool(tokenize(c)) and n < max_new_tokens and set(tokenize(c)) <= vocabulary)
                       for c, n in zip(captions, token_counts)])


def caption_rewards(captions: list[str], references: list[str], token_counts: list[int],
                    max_new_tokens: int) -> dict[str, np.ndarray]:
    """``rouge_l``, ``caption_sim`` and ``format`` of each caption against its reference."""
    return {"rouge_l": np.asarray([rouge_l(c, r) for c, r in zip(captions, references)]),
            "caption_sim": np.clip(caption_similarities(captions, references), 0.0, 1.0),
            "format": format_reward(captions, token_counts, max_new_tokens)}


def _unit(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 255.0


def video_similarity(videos: np.ndarray, truth: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(N, K, S, S, 3) uint8 videos and recorded clips, (N, S, S, 3) current frames -> (N,) in (0, 1]."""
    error = ((_unit(videos) - _unit(truth)) ** 2).mean(axis=(1, 2, 3, 4))
    hold = ((_unit(current)[:, None] - _unit(truth)) ** 2).mean(axis=(1, 2, 3, 4))
    # a recorded clip that does not move at all: the video is right exactly when it does not either
    hold = np.maximum(hold, 1e-6)
    return hold / (hold + error)


def static_penalty(videos: np.ndarray, truth: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: how much less the video moves than the recorded clip (0 when that one is still)."""
    moved = np.abs(_unit(videos) - _unit(current)[:, None]).mean(axis=(1, 2, 3, 4))
    expected = np.abs(_unit(truth) - _unit(current)[:, None]).mean(axis=(1, 2, 3, 4))
    penalty = np.clip(1.0 - moved / np.maximum(expected, MIN_MOTION), 0.0, 1.0)
    return np.where(expected < MIN_MOTION, 0.0, penalty)


def combine(terms: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted sum of the terms; a weight's sign says whether a term is a reward or a penalty."""
    missing = sorted(name for name, weight in weights.items() if weight and name not in terms)
    if missing:
        raise ValueError(f"reward weights name terms {missing} that were not computed; terms: {sorted(terms)}")
    total = np.zeros(len(next(iter(terms.values()))))
    for name, weight in weights.items():
        if weight:
            total = total + weight * np.asarray(terms[name], np.float64)
    return total
