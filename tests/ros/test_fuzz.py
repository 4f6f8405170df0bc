"""1,200 malformed Image and CompressedImage messages over DDS: the node stays up, counts every one
it sees, plans again on the next good frame, and its memory stays flat."""

import io

import numpy as np
import psutil
import pytest
from PIL import Image as PILImage
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from conftest import wait_for
from ros_probe import Probe, scene
from vans_ros.planner_node import PlannerNode

ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"]
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def malformed_image(rng: np.random.Generator) -> Image:
    """One Image with exactly one thing wrong (picked at random), or several."""
    encoding = str(rng.choice(ENCODINGS))
    width, height = int(rng.integers(1, 200)), int(rng.integers(1, 200))
    step = width * CHANNELS[encoding] + int(rng.integers(0, 8))
    size = step * height
    fault = rng.integers(6)
    if fault == 0:
        encoding = str(rng.choice(["yuv422", "16UC1", "bayer_rggb8", "", "RGB8", "rgb16", "\x00"]))
    elif fault == 1:
        width, height = (0, height) if rng.random() < 0.5 else (width, 0)
    elif fault == 2:
        step = int(rng.integers(0, width * CHANNELS[encoding]))
    elif fault == 3:
        size = int(rng.integers(0, size)) if rng.random() < 0.5 else size + int(rng.integers(1, 5000))
    elif fault == 4:
        width, height = int(rng.integers(4000, 2**31)), int(rng.integers(2000, 2**31))
        step, size = width * 3, int(rng.integers(0, 100))
    else:  # claims to be large, carries little
        height, size = int(rng.integers(10_000, 2**31)), int(rng.integers(0, 1000))
    return Image(header=Header(frame_id="fuzz"), encoding=encoding, width=width, height=height, step=step,
                 data=rng.integers(0, 256, size, dtype=np.uint8).tobytes())


def _encoded(fmt: str, rng) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def malformed_compressed(rng: np.random.Generator, valid: dict[str, bytes]) -> CompressedImage:
    fmt = str(rng.choice(["jpeg", "png"]))
    data = valid[fmt]
    fault = rng.integers(4)
    if fault == 0:
        fmt = str(rng.choice(["bmp", "tiff", "", "16UC1; compressedDepth png", "raw", "jpeg2000"]))
    elif fault == 1:
        data = data[: int(rng.integers(0, len(data) // 2))]  # truncated
    elif fault == 2:
        data = rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()  # noise
    else:  # the right header, a corrupt body
        body = bytearray(data)
        body[16:] = rng.integers(0, 256, len(body) - 16, dtype=np.uint8).tobytes()
        data = bytes(body)
    return CompressedImage(header=Header(frame_id="fuzz"), format=fmt, data=data)


@pytest.fixture(scope="module")
def loop(ros, tiny_model):
    from conftest import Spinner

    spinner = Spinner()
    planner = spinner.add(PlannerNode(parameter_overrides=[
        Parameter("model_dir", value=str(tiny_model)), Parameter("plan_period_s", value=0.0),
        Parameter("subscribe_compressed", value=True), Parameter("camera_qos_depth", value=1000)]))
    probe = spinner.add(Probe())
    probe.instruction_pub.publish(String(data="open the drawer"))
    wait_for(lambda: planner.instruction == "open the drawer", what="the instruction")
    yield planner, probe
    spinner.close()


def _send_batch(probe, planner, rng, valid, count):
    seen = planner.health.total
    for i in range(count):
        if i % 2:
            probe.compressed_pub.publish(malformed_compressed(rng, valid))
        else:
            probe.image_pub_reliable.publish(malformed_image(rng))
    wait_for(lambda: planner.health.total >= seen + count, timeout=60, what=f"{count} bad messages counted")


def _plans_again(planner, probe, stamp):
    done = planner.worker.plans_done
    probe.send_frame(scene(0), stamp)
    wait_for(lambda: planner.worker.plans_done > done, what="a plan on the next good frame")
    probe.clear()  # the probe keeps what it receives: let go of it, only the node's memory is measured


def test_fuzzed_frames_leave_the_node_up_and_memory_flat(loop):
    planner, probe = loop
    rng = np.random.default_rng(20261123)
    valid = {"jpeg": _encoded("JPEG", rng), "png": _encoded("PNG", rng)}
    process = psutil.Process()
    _plans_again(planner, probe, 10.0)
    _send_batch(probe, planner, rng, valid, 200)  # warm-up: allocator pools, logger, caches
    rss_before = process.memory_info().rss
    sent = 0
    for round_ in range(5):
        _send_batch(probe, planner, rng, valid, 240)
        sent += 240
        _plans_again(planner, probe, 11.0 + round_)
    rss_after = process.memory_info().rss
    assert sent >= 1000
    assert planner.health.total >= 1200
    kinds = set(planner.health.counts)
    assert {"encoding", "zero_size", "step", "data_length", "too_large", "format", "corrupt"} <= kinds, kinds
    growth_mib = (rss_after - rss_before) / 2**20
    print(f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB over {sent} malformed messages")
    assert growth_mib < 20, f"RSS grew {growth_mib:.1f} MiB over {sent} malformed messages"
