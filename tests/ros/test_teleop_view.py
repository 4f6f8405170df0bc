"""The Foxglove live view (a real WebSocket client on the Foxglove protocol) and the MCAP recording
(read back with the mcap reader); the shipped layout is the one the code builds."""

import asyncio
import json
import socket
from pathlib import Path

import websockets
from mcap.reader import make_reader
from rclpy.parameter import Parameter

from conftest import wait_for
from ros_probe import Probe, scene
from vans_ros import teleop_view
from vans_ros.planner_node import PlannerNode

LAYOUT = Path(__file__).resolve().parents[2] / "ros2_ws/src/vans_ros/config/foxglove_layout.json"
TOPICS = {teleop_view.CAMERA, teleop_view.FORESEEN, teleop_view.CAPTION, teleop_view.LATENCY}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def watch(port: int, feed, timeout: float = 30.0) -> tuple[dict, dict]:
    """Connect with the Foxglove WebSocket protocol, subscribe to every advertised channel, call
    ``feed()`` until a binary message has arrived on each; returns (channels by topic, message counts)."""
    channels, counts = {}, {}
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"]) as ws:
        assert ws.subprotocol == "foxglove.sdk.v1"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        by_subscription = {}
        while loop.time() < deadline and (set(channels) != TOPICS or set(counts) != TOPICS):
            feed()
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            if isinstance(message, str):
                op = json.loads(message)
                if op["op"] == "advertise":
                    new = [c for c in op["channels"] if c["topic"] not in channels]
                    for c in new:
                        channels[c["topic"]] = c
                        by_subscription[c["id"]] = c["topic"]
                    await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                        {"id": c["id"], "channelId": c["id"]} for c in new]}))
            elif message[0] == 1:  # message data: opcode, subscription id (u32 LE), log time, payload
                topic = by_subscription[int.from_bytes(message[1:5], "little")]
                counts[topic] = counts.get(topic, 0) + 1
    return channels, counts


def test_live_view_and_recording(ros, tiny_model, tmp_path):
    from conftest import Spinner

    port, mcap_path = free_port(), tmp_path / "session.mcap"
    spinner = Spinner()
    planner = spinner.add(PlannerNode(parameter_overrides=[
        Parameter("model_dir", value=str(tiny_model)), Parameter("plan_period_s", value=0.0),
        Parameter("foxglove_port", value=port), Parameter("foxglove_host", value="127.0.0.1"),
        Parameter("mcap_path", value=str(mcap_path)), Parameter("instruction", value="push the green button")]))
    probe = spinner.add(Probe())
    stamp = [100.0]

    def feed():
        if planner.worker.idle():
            stamp[0] += 0.05
            probe.send_frame(scene(int(stamp[0] * 20) % 5), stamp[0])

    try:
        channels, counts = asyncio.run(watch(port, feed))
        assert set(channels) == TOPICS, channels
        assert channels[teleop_view.CAMERA]["schemaName"] == "foxglove.RawImage"
        assert channels[teleop_view.CAPTION]["encoding"] == "json"
        assert set(counts) == TOPICS, counts
        wait_for(planner.worker.idle, what="the last plan")
    finally:
        spinner.close()  # closes the recording

    with open(mcap_path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        topics = {c.topic for c in summary.channels.values()}
        assert topics == TOPICS
        messages = {}
        for _, channel, message in reader.iter_messages():
            messages.setdefault(channel.topic, []).append(message)
    assert len(messages[teleop_view.FORESEEN]) == 8 * len(messages[teleop_view.CAPTION]) > 0
    assert len(messages[teleop_view.CAMERA]) >= len(messages[teleop_view.CAPTION])
    assert set(json.loads(messages[teleop_view.LATENCY][0].data)) == {"plan_ms", "planner_ms", "p50_ms", "p95_ms"}


def test_shipped_layout_is_the_built_one():
    shipped = json.loads(LAYOUT.read_text())
    assert shipped == json.loads(teleop_view.layout())
    text = LAYOUT.read_text()
    for topic in TOPICS:
        assert f'"{topic}' in text
    panels = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "panel":
                panels.append(node["panelType"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(shipped)
    assert sorted(panels) == ["Image", "Image", "Plot", "RawMessages"]
