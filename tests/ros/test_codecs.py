"""Frame decoding, the context buffer and Plan -> message encoding, each alone (no ROS graph)."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from vans_ros import frames, plan_messages


def raw(rgb: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """Encode an RGB array the way a camera driver would, with ``pad`` bytes of row padding."""
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1],
              "rgba8": np.concatenate([rgb, np.full_like(rgb[..., :1], 7)], -1),
              "bgra8": np.concatenate([rgb[..., ::-1], np.full_like(rgb[..., :1], 7)], -1)}[encoding]
    h, w, c = pixels.shape
    rows = np.concatenate([pixels.reshape(h, w * c), np.zeros((h, pad), np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=w * c + pad, data=rows.tobytes())


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 5])
def test_decode_each_encoding(encoding, pad):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[..., 1] = rgb[..., 2] = rgb[..., 0]
    out, shape = frames.decode_image(raw(rgb, encoding, pad), size=(16, 16))
    assert shape == (16, 16)
    np.testing.assert_array_equal(out, rgb)


def test_decode_resizes_to_image_size():
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, 320:] = (255, 0, 0)
    out, shape = frames.decode_image(raw(rgb, "bgr8"), size=(64, 64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and shape == (480, 640)
    assert tuple(out[32, 60]) == (255, 0, 0) and tuple(out[32, 2]) == (0, 0, 0)


def test_decode_resizes_to_views_side_by_side():
    """A planner of two cameras takes (64, 128) frames: the desk view left, the side view right."""
    rgb = np.zeros((128, 256, 3), np.uint8)
    rgb[:, 128:] = (0, 0, 255)
    out, _ = frames.decode_image(raw(rgb, "rgb8"), size=(64, 128))
    assert out.shape == (64, 128, 3)
    assert tuple(out[32, 100]) == (0, 0, 255) and tuple(out[32, 20]) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8"])
def test_decode_compressed(fmt):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (0, 200, 0)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG" if "png" in fmt else "JPEG")
    out, shape = frames.decode_compressed(CompressedImage(format=fmt, data=buffer.getvalue()), size=(64, 64))
    assert out.shape == (64, 64, 3) and shape == (48, 64)
    assert abs(int(out[20, 5, 1]) - 200) < 10 and out[20, 60, 1] < 10


@pytest.mark.parametrize("msg, kind", [
    (Image(encoding="yuv422", width=4, height=4, step=8, data=bytes(32)), "encoding"),
    (Image(encoding="rgb8", width=0, height=4, step=0, data=b""), "zero_size"),
    (Image(encoding="rgb8", width=4, height=4, step=11, data=bytes(44)), "step"),
    (Image(encoding="rgb8", width=4, height=4, step=12, data=bytes(47)), "data_length"),
    (Image(encoding="rgb8", width=3840, height=2160, step=11520, data=b""), "too_large"),
])
def test_bad_image_names_its_fault(msg, kind):
    with pytest.raises(frames.FrameError) as e:
        frames.decode_image(msg, (64, 64))
    assert e.value.kind == kind


def test_bad_compressed_names_its_fault():
    for fmt in ("bmp", "16UC1; compressedDepth png", ""):
        with pytest.raises(frames.FrameError, match="unsupported compressed format") as e:
            frames.decode_compressed(CompressedImage(format=fmt, data=b"BM"), (64, 64))
        assert e.value.kind == "format"
    with pytest.raises(frames.FrameError) as e:
        frames.decode_compressed(CompressedImage(format="png", data=b"\x89PNG\r\n\x1a\n garbage"), (64, 64))
    assert e.value.kind == "corrupt"
    big = io.BytesIO()
    PILImage.new("L", (4000, 3000)).save(big, format="PNG")
    with pytest.raises(frames.FrameError) as e:
        frames.decode_compressed(CompressedImage(format="png", data=big.getvalue()), (64, 64))
    assert e.value.kind == "too_large"


@settings(max_examples=300, deadline=None)
@given(encoding=st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "16UC1", ""]),
       width=st.integers(0, 300), height=st.integers(0, 300), step=st.integers(0, 1300),
       data=st.binary(max_size=3000))
def test_decode_image_either_decodes_or_raises_frame_error(encoding, width, height, step, data):
    msg = Image(encoding=encoding, width=width, height=height, step=step, data=data)
    try:
        out, _ = frames.decode_image(msg, (32, 32))
    except frames.FrameError:
        return
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from(["jpeg", "png", "jpg", "tiff", ""]), data=st.binary(max_size=2000))
def test_decode_compressed_either_decodes_or_raises_frame_error(fmt, data):
    try:
        out, _ = frames.decode_compressed(CompressedImage(format=fmt, data=data), (32, 32))
    except frames.FrameError:
        return
    assert out.shape == (32, 32, 3)


def test_context_buffer_spaces_frames_by_the_period():
    buffer = frames.ContextBuffer(context_frames=4, period_s=0.05)
    frame = lambda v: np.full((2, 2, 3), v, np.uint8)  # noqa: E731
    buffer.push(frame(1), 0.0, (2, 2))
    np.testing.assert_array_equal(buffer.snapshot()[:, 0, 0, 0], [1, 1, 1, 1])  # padded with the oldest
    for i, t in enumerate(np.arange(1, 10) / 30):  # a 30 Hz camera
        buffer.push(frame(i + 2), t, (2, 2))
    stamps = [s for s, _ in buffer._slots]
    assert len(buffer) == 4 and np.all(np.diff(stamps) >= 0.045)
    assert buffer.snapshot()[-1, 0, 0, 0] == 10  # the newest frame always makes the context
    assert buffer.push(frame(0), 0.4, (4, 4)) and len(buffer) == 1  # new resolution: context restarts


def test_actions_round_trip_through_the_trajectory():
    actions = np.random.default_rng(1).uniform(-1, 1, (8, 4)).astype(np.float32)
    msg = plan_messages.actions_to_trajectory(actions, Header(frame_id="world"), period_s=0.05, max_step_m=0.02)
    assert len(msg.points) == 8
    np.testing.assert_allclose(plan_messages.trajectory_to_actions(msg, 0.05, 0.02), actions, atol=1e-6)
    last = msg.points[-1].transforms[0].translation
    np.testing.assert_allclose([last.x, last.y, last.z], actions[:, :3].sum(0) * 0.02, atol=1e-6)
    assert msg.points[2].time_from_start.nanosec == 150_000_000
    twist = plan_messages.action_to_twist(actions[0], Header(), 0.05, 0.02)
    np.testing.assert_allclose(plan_messages.twist_to_action(twist, actions[0, 3], 0.05, 0.02), actions[0], atol=1e-6)


def test_foreseen_images_and_strip():
    foreseen = np.zeros((8, 64, 64, 3), np.uint8)
    images = plan_messages.foreseen_images(foreseen, stamp_s=12.5, period_s=0.05, frame_id="cam")
    assert [plan_messages.time_to_seconds(m.header.stamp) for m in images] == pytest.approx(
        12.5 + 0.05 * np.arange(1, 9))
    assert all(m.header.frame_id == "cam" and m.encoding == "rgb8" and m.step == 192 for m in images)
    strip = plan_messages.strip_mosaic(np.zeros((4, 64, 64, 3), np.uint8), foreseen)
    assert strip.shape == (64, 64 * 12 + 2, 3)
