"""The operator's view: a Foxglove WebSocket live view and/or an MCAP recording (foxglove-sdk).

Four channels, the same in both sinks:

- ``/camera``: ``foxglove.RawImage``, the frames the planner sees (at the planner's image size);
- ``/foreseen``: ``foxglove.RawImage``, each predicted frame, stamped with the moment it foresees;
- ``/caption``: JSON ``{"text": ...}``, the next event;
- ``/latency``: JSON ``{"plan_ms", "planner_ms", "p50_ms", "p95_ms"}``.

``config/foxglove_layout.json`` (written by :func:`layout`) shows camera and foreseen frames side by
side, the caption under them and a latency plot.
"""

from __future__ import annotations

from pathlib import Path

import foxglove
import numpy as np
from foxglove.channels import RawImageChannel
from foxglove.messages import RawImage, Timestamp

CAMERA, FORESEEN, CAPTION, LATENCY = "/camera", "/foreseen", "/caption", "/latency"
CAPTION_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}
LATENCY_SCHEMA = {"type": "object", "properties": {k: {"type": "number"}
                                                   for k in ("plan_ms", "planner_ms", "p50_ms", "p95_ms")}}


def _raw_image(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> RawImage:
    height, width = rgb.shape[:2]
    return RawImage(timestamp=Timestamp(sec=stamp_ns // 1_000_000_000, nsec=stamp_ns % 1_000_000_000),
                    frame_id=frame_id, width=width, height=height, encoding="rgb8", step=width * 3,
                    data=np.ascontiguousarray(rgb).tobytes())


class TeleopView:
    """Args:
        port (`int`): WebSocket port of the live view; 0 = no server.
        mcap_path (`str`): MCAP file to record; empty = no recording. An existing file is replaced.
        host (`str`, defaults to `"0.0.0.0"`): the interface the server listens on.
    """

    def __init__(self, port: int, mcap_path: str, host: str = "0.0.0.0"):
        self.context = foxglove.Context()
        self.server = foxglove.start_server(name="vans_ros planner", host=host, port=port,
                                            context=self.context) if port else None
        self.recording = None
        if mcap_path:
            Path(mcap_path).parent.mkdir(parents=True, exist_ok=True)
            self.recording = foxglove.open_mcap(mcap_path, allow_overwrite=True, context=self.context)
        self._camera = RawImageChannel(CAMERA, context=self.context)
        self._foreseen = RawImageChannel(FORESEEN, context=self.context)
        self._caption = foxglove.Channel(CAPTION, schema=CAPTION_SCHEMA, context=self.context)
        self._latency = foxglove.Channel(LATENCY, schema=LATENCY_SCHEMA, context=self.context)

    @property
    def port(self) -> int | None:
        return self.server.port if self.server else None

    def log_camera(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        self._camera.log(_raw_image(rgb, stamp_ns, frame_id), log_time=stamp_ns)

    def log_plan(self, caption: str, foreseen: np.ndarray, stamp_ns: int, period_ns: int, frame_id: str,
                 latency: dict[str, float]) -> None:
        self._caption.log({"text": caption}, log_time=stamp_ns)
        self._latency.log(latency, log_time=stamp_ns)
        for k, frame in enumerate(foreseen):
            # logged at the plan's time, stamped with the moment it foresees
            self._foreseen.log(_raw_image(frame, stamp_ns + (k + 1) * period_ns, frame_id), log_time=stamp_ns)

    def close(self) -> None:
        if self.recording is not None:
            self.recording.close()
            self.recording = None
        if self.server is not None:
            self.server.stop()
            self.server = None


def layout() -> str:
    """The Foxglove layout shipped as ``config/foxglove_layout.json``."""
    import foxglove.layouts as fl

    def image(topic: str, title: str) -> fl.SplitItem:
        return fl.SplitItem(content=fl.ImagePanel(title=title, config=fl.ImageConfig(
            image_mode=fl.ImageModeConfig(image_topic=topic))))

    return fl.Layout(content=fl.SplitContainer(direction="column", items=[
        fl.SplitItem(proportion=3, content=fl.SplitContainer(direction="row", items=[
            image(CAMERA, "camera"), image(FORESEEN, "foreseen")])),
        fl.SplitItem(proportion=1, content=fl.SplitContainer(direction="row", items=[
            fl.SplitItem(content=fl.RawMessagesPanel(title="next event", config=fl.RawMessagesConfig(
                topic_path=f"{CAPTION}.text", font_size=18))),
            fl.SplitItem(content=fl.PlotPanel(title="plan latency (ms)", config=fl.PlotConfig(paths=[
                fl.PlotSeries(value=f"{LATENCY}.plan_ms", label="plan", timestamp_method="receiveTime"),
                fl.PlotSeries(value=f"{LATENCY}.p95_ms", label="p95", timestamp_method="receiveTime"),
            ]))),
        ])),
    ])).to_json()
