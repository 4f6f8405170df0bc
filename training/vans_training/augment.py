"""Per-clip augmentations shared by the stages that learn from recorded clips (``idm``, ``vdm``).

Each draws one transform per clip and applies it alike to every frame of the clip, so that the motion
between frames, and so the recorded actions, stay right while the scene looks like one the train split
never shows. Frames are (B, N, 3, H, W) floats in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jitter_photometry(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and per-channel gains, one draw per clip, on (B, N, 3, H, W) in [-1, 1]."""
    b = frames.shape[0]

    def draw(*shape):
        return (1.0 + strength * (2 * torch.rand(*shape, generator=generator) - 1)).to(frames.device)

    pixels = (frames + 1) / 2
    mean = pixels.mean(dim=(1, 2, 3, 4), keepdim=True)
    pixels = (pixels - mean) * draw(b, 1, 1, 1, 1) + mean  # contrast
    pixels = pixels * draw(b, 1, 1, 1, 1) * draw(b, 1, 3, 1, 1)  # brightness, colour
    return (pixels.clamp(0, 1) * 2 - 1)


def shift_clips(frames: torch.Tensor, max_shift: int, generator: torch.Generator, views: int = 1) -> torch.Tensor:
    """Translate each (N, 3, H, W) clip of (B, N, 3, H, W) frames by one random integer offset in
    ``[-max_shift, max_shift]`` per axis, the same for all its frames; edges are replicated (DrQ's
    pad-and-crop). A gripper delta moves the gripper by nearly the same pixels wherever it is, so the
    action labels still hold. Frames of ``views`` square views side by side (W = views * H) have each
    view shifted on its own, as two cameras placed a little differently would be, with no view's
    pixels moving into another's."""
    if max_shift <= 0:
        return frames
    b, n, c, h, w = frames.shape
    if views > 1:
        if w != views * h:
            raise ValueError(f"{views} square views need frames {views} times as wide as high, got {h}x{w}")
        apart = frames.view(b, n, c, h, views, h).permute(0, 4, 1, 2, 3, 5).reshape(b * views, n, c, h, h)
        shifted = shift_clips(apart, max_shift, generator)
        return shifted.view(b, views, n, c, h, h).permute(0, 2, 3, 4, 1, 5).reshape(b, n, c, h, w)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator).tolist()
    padded = F.pad(frames.reshape(b, n * c, h, w), (max_shift,) * 4, mode="replicate")
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(offsets)]).view(b, n, c, h, w)


def augment_clips(frames: torch.Tensor, max_shift: int, jitter: float, generator: torch.Generator,
                  views: int = 1) -> torch.Tensor:
    """:func:`shift_clips` (each of ``views`` views on its own) then, when ``jitter`` is set,
    :func:`jitter_photometry`."""
    frames = shift_clips(frames, max_shift, generator, views)
    return jitter_photometry(frames, jitter, generator) if jitter else frames
