"""Reading context clips and writing answer videos (imageio with its ffmpeg plugin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_frames(source: str | Path) -> np.ndarray:
    """Frames of a video file (MP4, GIF, ...) or of a folder of images sorted by name, as (N, H, W, 3) uint8."""
    import imageio.v2 as iio

    source = Path(source)
    if not source.exists():
        raise ValueError(f"video not found: {source}")
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not paths:
            raise ValueError(f"{source}: no {'/'.join(FRAME_SUFFIXES)} frames in this folder")
        frames = [iio.imread(p) for p in paths]
    else:
        try:
            fmt = "GIF" if source.suffix.lower() == ".gif" else "FFMPEG"
            frames = list(iio.mimread(source, format=fmt, memtest=False))
        except Exception as e:  # imageio raises several types for unreadable files
            raise ValueError(f"{source}: cannot read video ({e})") from e
    if not frames:
        raise ValueError(f"{source}: the video has no frames")
    return np.stack([_rgb(f) for f in frames])


def _rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3]).astype(np.uint8)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> None:
    """Write (N, H, W, 3) uint8 frames as MP4 (H.264 through imageio-ffmpeg) or GIF, by the suffix."""
    import imageio.v2 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    if path.suffix.lower() == ".gif":
        iio.mimwrite(path, list(frames), duration=1000 / fps, loop=0)
    else:
        iio.mimwrite(path, list(frames), fps=fps, macro_block_size=1, format="FFMPEG")


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize (N, H, W, 3) uint8 frames to ``size`` x ``size``, or to ``size = (height, width)`` (camera
    views side by side), with area averaging (PIL), if needed."""
    height, width = (size, size) if isinstance(size, int) else size
    if frames.shape[1:3] == (height, width):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BOX)) for f in frames])
