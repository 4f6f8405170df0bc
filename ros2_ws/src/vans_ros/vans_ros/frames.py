"""Camera messages -> RGB uint8 frames at the planner's size, and the context buffer they fill.

Decoding is the node's first stage and has no ROS state: ``decode_image`` and
``decode_compressed`` take a ``sensor_msgs`` message and return an ``(H, W, 3)`` uint8 array, or
raise :class:`FrameError` whose ``kind`` names what was wrong (the node counts errors by kind in its
diagnostics). Every check runs on the header fields before the pixel data is touched, so that a
malformed or oversized message costs next to nothing.
"""

from __future__ import annotations

import io
from collections import deque

import numpy as np
from PIL import Image as PILImage

# encoding -> (channels, indices of R, G, B in the pixel; None for grey)
ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}
COMPRESSED_FORMATS = ("jpeg", "png")
# A 1080p (1920x1200) frame is the largest we decode: the planner sees 64x64, and resizing 4K
# frames at 30 Hz would take a core. Larger cameras should be downscaled upstream (image_proc).
DEFAULT_MAX_PIXELS = 1920 * 1200


class FrameError(ValueError):
    """A camera message that cannot become a frame; ``kind`` is a short stable name for counting."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width == 0 or height == 0:
        raise FrameError("zero_size", f"image is {width}x{height}: no pixels")
    if width * height > max_pixels:
        raise FrameError("too_large", f"image is {width}x{height} ({width * height} pixels), over the limit of "
                                      f"{max_pixels} (max_image_pixels); downscale it upstream")


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 image to ``size = (height, width)``, squashing other aspect ratios
    (the planner's frames are its camera views, square, side by side; so are the simulator's and the
    training data's)."""
    height, width = size
    if rgb.shape[:2] == (height, width):
        return np.ascontiguousarray(rgb)
    upscaling = rgb.shape[0] < height or rgb.shape[1] < width
    resample = PILImage.Resampling.BILINEAR if upscaling else PILImage.Resampling.BOX
    return np.asarray(PILImage.fromarray(rgb).resize((width, height), resample))


def decode_image(msg, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """``sensor_msgs/Image`` in rgb8, bgr8, rgba8, bgra8 or mono8 -> ``(*size, 3)`` uint8 RGB (``size`` is
    ``(height, width)``), and the message's ``(height, width)``."""
    if msg.encoding not in ENCODINGS:
        raise FrameError("encoding", f"unsupported encoding {msg.encoding!r}; expected one of {sorted(ENCODINGS)}")
    channels, rgb_index = ENCODINGS[msg.encoding]
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels)
    if step < width * channels:
        raise FrameError("step", f"step {step} is shorter than width {width} x {channels} bytes per pixel "
                                 f"({msg.encoding})")
    if len(msg.data) != step * height:
        raise FrameError("data_length", f"data holds {len(msg.data)} bytes; step {step} x height {height} "
                                        f"needs {step * height}")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)
    pixels = rows[:, :width * channels].reshape(height, width, channels)
    rgb = np.repeat(pixels, 3, axis=2) if rgb_index is None else pixels[:, :, list(rgb_index)]
    return resize_rgb(rgb, size), (height, width)


def decode_compressed(msg, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """``sensor_msgs/CompressedImage`` (jpeg or png) -> ``(*size, 3)`` uint8 RGB (``size`` is ``(height,
    width)``), and the picture's ``(height, width)``.

    ``format`` is ``"jpeg"``, ``"png"``, or image_transport's ``"rgb8; jpeg compressed bgr8"``, whose
    compression is the first word after the semicolon. Depth images (``compressedDepth``) are refused.
    """
    words = msg.format.lower().split(";")[-1].split()
    fmt = {"jpg": "jpeg"}.get(words[0], words[0]) if words else ""
    if fmt not in COMPRESSED_FORMATS or "compresseddepth" in words:
        raise FrameError("format", f"unsupported compressed format {msg.format!r}; expected jpeg or png")
    if len(msg.data) == 0:
        raise FrameError("zero_size", "compressed image has no data")
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data)), formats=[fmt.upper()]) as image:
            _check_size(image.width, image.height, max_pixels)  # read from the header, before decoding
            rgb = np.asarray(image.convert("RGB"))
    except FrameError:
        raise
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as e:
        raise FrameError("corrupt", f"cannot decode {fmt} data ({type(e).__name__}: {e})") from e
    return resize_rgb(rgb, size), rgb.shape[:2]


class ContextBuffer:
    """The last ``context_frames`` frames, spaced at least one control period apart.

    The planner was trained on frames ``period_s`` apart. A camera faster than that fills one slot
    per period: a frame arriving within the period of the newest slot's first frame replaces that
    slot's image (the newest frame wins) instead of opening a new slot. Before ``context_frames``
    slots exist, the oldest frame is repeated, so planning starts on the first frame.

    A change of input resolution restarts the context: frames of two camera set-ups never mix.
    """

    def __init__(self, context_frames: int, period_s: float):
        self.context_frames = context_frames
        self.period_s = period_s
        self._slots: deque[tuple[float, np.ndarray]] = deque(maxlen=context_frames)
        self.newest_stamp: float | None = None
        self.source_shape: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._slots)

    def push(self, frame: np.ndarray, stamp_s: float, source_shape: tuple[int, int]) -> bool:
        """Add a frame; returns True when the source resolution changed and the context restarted."""
        restarted = self.source_shape is not None and source_shape != self.source_shape
        if restarted:
            self._slots.clear()
        self.source_shape = source_shape
        # 10% tolerance: a camera at exactly the control rate jitters around the period.
        if self._slots and stamp_s - self._slots[-1][0] < 0.9 * self.period_s:
            self._slots[-1] = (self._slots[-1][0], frame)
        else:
            self._slots.append((stamp_s, frame))
        self.newest_stamp = stamp_s
        return restarted

    def clear(self) -> None:
        self._slots.clear()
        self.newest_stamp = None
        self.source_shape = None

    def snapshot(self) -> np.ndarray:
        """``(context_frames, S, S, 3)`` uint8, oldest first; the oldest frame pads a short context."""
        if not self._slots:
            raise ValueError("no frame yet")
        frames = [f for _, f in self._slots]
        frames = [frames[0]] * (self.context_frames - len(frames)) + frames
        return np.stack(frames)
