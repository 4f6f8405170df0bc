"""Sizes of the VDM: a small `diffusers.WanTransformer3DModel` that denoises 64x64 RGB video in pixel space.

The transformer sees, per pixel and frame, ``in_channels = 7`` channels (see
:func:`vans_engine.models.vdm.sampling.pack_model_input` for the layout):

* 3 channels: the noisy future frames being denoised (K frames on the time axis);
* 3 channels: the context frames, oldest first, in time slots ``0 .. T-1``, zeros in slots ``T .. K-1``;
* 1 channel: a mask, 1 in the slots that hold a context frame, 0 elsewhere.

This is Wan image-to-video conditioning (known frames + mask concatenated to the noisy latents along
channels) without a VAE: pixels are the latents, so ``out_channels = 3`` is the velocity of the frames.
"""

from __future__ import annotations

from typing import Any

from diffusers import FlowMatchEulerDiscreteScheduler

IMAGE_SIZE = 64  # frames are IMAGE_SIZE x IMAGE_SIZE RGB
NUM_FRAMES = 8  # K: future frames generated per sample
NUM_CONTEXT_FRAMES = 4  # T: past frames the VDM is conditioned on (must be <= NUM_FRAMES)
RGB_CHANNELS = 3
IN_CHANNELS = 2 * RGB_CHANNELS + 1  # noisy frames + context frames + context mask
TEXT_DIM = 384  # MiniLM-L6 hidden size: the caption tokens' width
CAPTION_LENGTH = 32  # caption tokens per caption (padded / truncated)


def vdm_config(
    num_layers: int = 4,
    num_attention_heads: int = 4,
    attention_head_dim: int = 64,
    ffn_dim: int = 1024,
    text_dim: int = TEXT_DIM,
    patch_size: tuple[int, int, int] = (1, 8, 8),
    freq_dim: int = 256,
    rope_max_seq_len: int = 64,
) -> dict[str, Any]:
    """Keyword arguments of `WanTransformer3DModel` for our size.

    The defaults give about 5.1M parameters and ``8 x 8 x 8 = 512`` tokens per video.

    Args:
        num_layers (`int`, defaults to `4`): transformer blocks.
        num_attention_heads (`int`, defaults to `4`): heads; the model width is heads x head dim.
        attention_head_dim (`int`, defaults to `64`): channels per head; Wan's 3D RoPE splits it over
            time / height / width, so it must be at least 6 (64 gives 24 / 20 / 20).
        ffn_dim (`int`, defaults to `1024`): hidden size of each block's feed-forward network.
        text_dim (`int`, defaults to `384`): width of the caption tokens (MiniLM-L6, or a connector
            projecting the VLM's hidden states to the same width).
        patch_size (`tuple[int, int, int]`, defaults to `(1, 8, 8)`): (time, height, width) patch.
            8x8 pixels a token keeps a 4-step plan inside the CPU budget: one denoiser call takes
            25 ms in ONNX Runtime on 2 cores against 164 ms with 4x4 patches (4x the tokens).
        freq_dim (`int`, defaults to `256`): sinusoidal timestep embedding size.
        rope_max_seq_len (`int`, defaults to `64`): longest axis (in patches) RoPE tables cover;
            16 patches per side and 8 frames need far less than Wan's 1024.

    Returns:
        `dict[str, Any]`: the arguments, e.g. ``WanTransformer3DModel(**vdm_config())``; see :func:`make_vdm`.
    """
    return {
        "patch_size": tuple(patch_size),
        "num_attention_heads": num_attention_heads,
        "attention_head_dim": attention_head_dim,
        "in_channels": IN_CHANNELS,
        "out_channels": RGB_CHANNELS,
        "text_dim": text_dim,
        "freq_dim": freq_dim,
        "ffn_dim": ffn_dim,
        "num_layers": num_layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": rope_max_seq_len,
    }


def make_scheduler(shift: float = 1.0, num_train_timesteps: int = 1000) -> FlowMatchEulerDiscreteScheduler:
    """The flow-matching Euler scheduler shared by training, sampling and distillation.

    Args:
        shift (`float`, defaults to `1.0`): timestep shift. Wan uses 3-5 for 480p-720p latents, where
            more resolution needs more noise to wipe out structure; 64x64 pixels need none.
        num_train_timesteps (`int`, defaults to `1000`): timesteps are sigmas times this number.
    """
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=shift)
