"""Context frames -> Qwen2.5-VL video patches, in exactly the layout of Qwen's video processor.

Qwen's video processor (``Qwen2VLVideoProcessor``) needs torchvision, which does not run beside our
torch, so the patches are built here with numpy: rescale to [0, 1], normalise with CLIP's mean and
std, group ``temporal_patch_size`` frames, cut ``patch_size`` squares, and order the patches so that
each ``merge_size x merge_size`` block is contiguous (the vision tower merges those into one language
token). The result is what the processor returns as ``pixel_values_videos`` and ``video_grid_thw`` for
frames that need no resizing; ``use_processor=True`` calls the processor itself where it imports.
``tests/engine/test_vlm.py`` checks the layout against transformers' image processor and against a
patch-by-patch re-derivation.
"""

from __future__ import annotations

import numpy as np

# OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, as Qwen2-VL's processors use.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def video_patches(frames: np.ndarray, patch_size: int, temporal_patch_size: int, merge_size: int,
                  use_processor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Patchify a ``(T, H, W, 3)`` uint8 clip.

    Args:
        frames (`np.ndarray`): the clip, oldest first. A clip whose length is not a multiple of
            ``temporal_patch_size`` is padded by repeating its last frame, as Qwen's processor does.
        patch_size (`int`): side of a vision patch in pixels; H and W must be multiples of
            ``patch_size * merge_size`` (frames are never resized here).
        temporal_patch_size (`int`): frames per patch.
        merge_size (`int`): patches merged per side into one language token.
        use_processor (`bool`, *optional*, defaults to `False`): run transformers'
            ``Qwen2VLVideoProcessor`` instead (needs torchvision).

    Returns:
        `tuple[np.ndarray, np.ndarray]`: ``pixel_values_videos`` of shape
        ``(grid_t * grid_h * grid_w, 3 * temporal_patch_size * patch_size**2)`` float32, and
        ``video_grid_thw`` ``[[grid_t, grid_h, grid_w]]`` int64.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    num_frames, height, width, channels = frames.shape
    factor = patch_size * merge_size
    if height % factor or width % factor:
        raise ValueError(f"frame size {height}x{width} must be a multiple of patch_size * merge_size = {factor}")
    if use_processor:
        return _processor_patches(frames, patch_size, temporal_patch_size, merge_size)
    if pad := -num_frames % temporal_patch_size:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        num_frames += pad
    pixels = (frames.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    pixels = pixels.transpose(0, 3, 1, 2)  # (T, C, H, W)
    grid_t, grid_h, grid_w = num_frames // temporal_patch_size, height // patch_size, width // patch_size
    patches = pixels.reshape(grid_t, temporal_patch_size, channels, grid_h // merge_size, merge_size, patch_size,
                             grid_w // merge_size, merge_size, patch_size)
    # Rows: time, then merge blocks in raster order, then the patches inside a block, so that the
    # merger's consecutive groups of merge_size**2 rows are spatial 2x2 blocks. Columns: C, T, row, col,
    # the order of the Conv3d kernel in Qwen's patch embedding.
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)
    return np.ascontiguousarray(flat), np.array([[grid_t, grid_h, grid_w]], dtype=np.int64)


def _processor_patches(frames: np.ndarray, patch_size: int, temporal_patch_size: int,
                       merge_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The same patches from transformers' ``Qwen2VLVideoProcessor`` (imports torchvision)."""
    from transformers import Qwen2VLVideoProcessor

    processor = Qwen2VLVideoProcessor(patch_size=patch_size, temporal_patch_size=temporal_patch_size,
                                      merge_size=merge_size)
    # Our clips are already sampled and sized: no resizing, no frame sampling.
    out = processor(videos=[frames], do_resize=False, do_sample_frames=False, return_tensors="np")
    return out["pixel_values_videos"].astype(np.float32), out["video_grid_thw"].astype(np.int64)
