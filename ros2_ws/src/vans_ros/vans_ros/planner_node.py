"""The ``planner`` node: camera frames + instruction in; caption, foreseen video and action plan out.

    vans-ros-planner --ros-args --params-file ros2_ws/src/vans_ros/config/planner.yaml
    vans-ros-planner --help            # every parameter, its default and what it holds

Topics (relative names, so namespaces and remapping work):

- in: ``camera/image_raw`` (``sensor_msgs/Image``, sensor-data QoS), optionally
  ``camera/image_raw/compressed`` (``sensor_msgs/CompressedImage``, jpeg or png), ``instruction``
  (``std_msgs/String``, transient local: a late joiner gets the current one), and, for a checkpoint
  whose IDM or VLM reads proprioception, ``joint_states`` (``sensor_msgs/JointState``: the ``state_joints``
  entries, tool point x, y, z in metres and gripper opening 0-1);
- out: ``~/next_event`` (caption), ``~/foreseen/image`` (one Image per predicted frame, stamped in the
  future at the control period), ``~/foreseen/strip`` (context | foreseen mosaic), ``~/action_plan``
  (``trajectory_msgs/MultiDOFJointTrajectory``, layout in :mod:`vans_ros.plan_messages`), ``~/cmd``
  (``geometry_msgs/TwistStamped``, the first action), ``/diagnostics``;
- service ``~/plan_once`` (``std_srvs/Trigger``): plan now on the newest frames.

Callbacks only decode, buffer and hand requests over; planning runs on a worker thread
(:mod:`vans_ros.planning`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
import numpy as np
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import MultiDOFJointTrajectory

from vans_ros import frames as frame_codec
from vans_ros import plan_messages
from vans_ros.checkpoints import resolve_model_dir
from vans_ros.entry import spin_node
from vans_ros.health import OK, WARN, InputHealth, diagnostic_status
from vans_ros.parameters import ParameterError, ParameterSpec, declare_and_check, non_negative, positive
from vans_ros.planning import LatencyWindow, PlanRequest, PlanWorker

RELIABLE_10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# More frames than this within one second is a burst worth a warning (cameras run at 15-60 Hz).
BURST_FRAMES_PER_S = 120

PARAMETERS = [
    ParameterSpec("model_dir", "", "checkpoint folder; empty = the shipped model (models/vans-desk-64)"),
    ParameterSpec("backend", "onnxruntime", "inference backend", choices=("onnxruntime", "torch", "tensorrt")),
    ParameterSpec("device", "cpu", "'cpu' or 'cuda[:N]'",
                  check=lambda v: v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit()),
                  rule="'cpu', 'cuda' or 'cuda:N'"),
    ParameterSpec("context_frames", 0, "camera frames of context per plan; 0 = the checkpoint's (others must match it)",
                  check=non_negative, rule=">= 0"),
    ParameterSpec("image_size", 0, "side in pixels frames are resized to; 0 = the checkpoint's (others must match it)",
                  check=non_negative, rule=">= 0"),
    ParameterSpec("plan_period_s", 0.2, "seconds between plans, in camera time: a plan is requested as the first "
                  "frame stamped this long after the last planned-on frame arrives; 0 = plan on every new frame as "
                  "fast as the planner goes (newest frames win)", check=lambda v: 0 <= v <= 60, rule="in [0, 60]"),
    ParameterSpec("num_denoise_steps", 0, "VDM denoising steps per plan; 0 = the checkpoint's default",
                  check=lambda v: 0 <= v <= 100, rule="in [0, 100]"),
    ParameterSpec("instruction", "", "instruction until one arrives on 'instruction'; empty = wait for one"),
    ParameterSpec("foxglove_port", 0, "Foxglove WebSocket live view port; 0 = off",
                  check=lambda v: 0 <= v <= 65535, rule="in [0, 65535]"),
    ParameterSpec("foxglove_host", "0.0.0.0", "interface the Foxglove live view listens on",
                  check=bool, rule="non-empty"),
    ParameterSpec("mcap_path", "", "MCAP file recording camera, foreseen frames, caption and latency; empty = off"),
    ParameterSpec("frame_id", "camera", "frame_id of published images when the camera's header has none",
                  check=bool, rule="non-empty"),
    ParameterSpec("action_frame_id", "world", "frame the tool displacements of ~/action_plan and ~/cmd are in",
                  check=bool, rule="non-empty"),
    ParameterSpec("max_step_m", 0.02, "metres the tool moves per unit action per control period",
                  check=positive, rule="> 0"),
    ParameterSpec("max_image_pixels", frame_codec.DEFAULT_MAX_PIXELS,
                  "largest camera frame decoded (width x height); larger ones are rejected", check=positive,
                  rule="> 0"),
    ParameterSpec("camera_qos_depth", 5, "queue depth of the camera subscriptions (sensor-data QoS, best effort); "
                  "a burst beyond it is dropped by the middleware before the node sees it",
                  check=lambda v: 1 <= v <= 1000, rule="in [1, 1000]"),
    ParameterSpec("subscribe_compressed", False, "also take frames from camera/image_raw/compressed (jpeg, png)"),
    ParameterSpec("state_joints", ["ee_x", "ee_y", "ee_z", "gripper"],
                  "joint_states entries, in order, that make the proprioception of a checkpoint whose IDM or VLM "
                  "reads it (tool point x, y, z in m, gripper opening 0-1); not subscribed otherwise",
                  check=lambda v: len(v) > 0 and all(v), rule="non-empty names"),
    ParameterSpec("max_state_age_s", 0.5, "a plan needs a joint state stamped within this many seconds of its "
                  "newest frame", check=positive, rule="> 0"),
    ParameterSpec("seed", 0, "seed of the first plan, later plans count up; -1 = unseeded",
                  check=lambda v: v >= -1, rule=">= -1"),
    ParameterSpec("diagnostics_period_s", 1.0, "seconds between /diagnostics messages",
                  check=lambda v: 0 < v <= 60, rule="in (0, 60]"),
]


class PlannerNode(Node):
    PARAMETERS = PARAMETERS

    def __init__(self, **kwargs):
        super().__init__("planner", **kwargs)
        self.params = p = declare_and_check(self, PARAMETERS)
        self.planner = self._load_planner(p)
        config = self.planner.config
        self.frame_size, self.period_s = config.frame_size, config.control_period_s
        self.steps = p["num_denoise_steps"] or None
        self.max_step_m, self.max_pixels = p["max_step_m"], p["max_image_pixels"]
        self.instruction = p["instruction"].strip()

        self._lock = threading.Lock()  # guards the context buffer and the counters below
        self.context_buffer = frame_codec.ContextBuffer(config.context_frames, self.period_s)
        self._frame_id = p["frame_id"]
        self._submitted_stamp: float | None = None
        self._arrivals: deque[float] = deque()
        self.frames_received = 0
        self.frames_rejected = 0
        self._plans_started = 0
        self.health = InputHealth(self.get_logger())
        self.state_joints = list(p["state_joints"])
        self._state: tuple[float, np.ndarray] | None = None  # (stamp in s, proprioception) of the newest joint state
        self.states_received = 0
        self.latency_ms, self.planner_ms, self.overhead_ms = LatencyWindow(), LatencyWindow(), LatencyWindow()

        self.view = None
        if p["foxglove_port"] or p["mcap_path"]:
            from vans_ros.teleop_view import TeleopView  # foxglove-sdk is loaded only when a view is asked for

            self.view = TeleopView(p["foxglove_port"], p["mcap_path"], host=p["foxglove_host"])

        self.pub_event = self.create_publisher(String, "~/next_event", RELIABLE_10)
        self.pub_foreseen = self.create_publisher(Image, "~/foreseen/image", RELIABLE_10)
        self.pub_strip = self.create_publisher(Image, "~/foreseen/strip", RELIABLE_10)
        self.pub_plan = self.create_publisher(MultiDOFJointTrajectory, "~/action_plan", RELIABLE_10)
        self.pub_cmd = self.create_publisher(TwistStamped, "~/cmd", RELIABLE_10)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_10)
        self.worker = PlanWorker(self._plan, self._publish_plan, self._planning_failed, lambda: self.instruction)

        camera_qos = QoSProfile(depth=p["camera_qos_depth"], reliability=qos_profile_sensor_data.reliability,
                                durability=qos_profile_sensor_data.durability)
        self.create_subscription(Image, "camera/image_raw", self._on_image, camera_qos)
        if p["subscribe_compressed"]:
            self.create_subscription(CompressedImage, "camera/image_raw/compressed", self._on_compressed, camera_qos)
        self.create_subscription(String, "instruction", self._on_instruction, LATCHED)
        if self.planner.needs_state:
            self.create_subscription(JointState, "joint_states", self._on_joint_state, RELIABLE_10)
        self.create_service(Trigger, "~/plan_once", self._on_plan_once)
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self.get_logger().info(
            f"planning with {self.model_dir} ({'trained' if self.planner.trained else 'UNTRAINED'}) on "
            f"{p['backend']}/{p['device']}: {config.context_frames} frames of "
            f"{self.frame_size[0]}x{self.frame_size[1]}px (cameras {', '.join(config.cameras)}) -> "
            f"{config.future_frames} foreseen frames "
            + (f"every {p['plan_period_s']} s" if p["plan_period_s"] else "on every new frame")
            + (f"; Foxglove live view on port {self.view.port}" if self.view and self.view.port else "")
            + (f"; recording {p['mcap_path']}" if p["mcap_path"] else "")
            + (f"; proprioception {self.state_joints} from joint_states" if self.planner.needs_state else ""))

    def _load_planner(self, p):
        from vans_engine.checkpoint import CheckpointError
        from vans_engine.planner import Planner

        try:
            self.model_dir, _ = resolve_model_dir(p["model_dir"])
            planner = Planner.from_pretrained(self.model_dir, backend=p["backend"], device=p["device"])
        except (FileNotFoundError, CheckpointError, ValueError, RuntimeError) as e:
            raise ParameterError(f"parameter 'model_dir'/'backend'/'device': cannot load the planner: {e}") from e
        for name in ("context_frames", "image_size"):
            if p[name] and p[name] != getattr(planner.config, name):
                raise ParameterError(f"parameter {name!r} is {p[name]} but {self.model_dir} was trained with "
                                     f"{getattr(planner.config, name)}; set 0 to take the checkpoint's")
        if planner.needs_state and len(p["state_joints"]) != planner.state_dim:
            raise ParameterError(f"parameter 'state_joints' names {len(p['state_joints'])} joints but "
                                 f"{self.model_dir} reads {planner.state_dim} (tool point x, y, z and gripper opening)")
        return planner

    # -- input callbacks: decode, buffer, hand over; never block ----------------------------------

    def _on_image(self, msg: Image) -> None:
        self._take_frame(msg, frame_codec.decode_image, "camera/image_raw")

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._take_frame(msg, frame_codec.decode_compressed, "camera/image_raw/compressed")

    def _take_frame(self, msg, decode, topic: str) -> None:
        received = time.perf_counter()
        try:
            rgb, source_shape = decode(msg, self.frame_size, self.max_pixels)
        except frame_codec.FrameError as e:
            self.frames_rejected += 1
            self.health.report(e.kind, f"{topic}: frame rejected: {e}")
            return
        stamp_s = plan_messages.time_to_seconds(msg.header.stamp)
        if stamp_s == 0.0:  # an unstamped camera: the node's clock stands in
            stamp_s = self.get_clock().now().nanoseconds * 1e-9
        frame_id = msg.header.frame_id or self.params["frame_id"]
        with self._lock:
            restarted = self.context_buffer.push(rgb, stamp_s, source_shape)
            self._frame_id = frame_id
            self.frames_received += 1
            self._arrivals.append(received)
            while self._arrivals and received - self._arrivals[0] > 1.0:
                self._arrivals.popleft()
            burst = len(self._arrivals)
        if restarted:
            self.health.report("resolution_change", f"{topic}: resolution changed to {source_shape[1]}x"
                               f"{source_shape[0]}: context restarted from this frame", WARN)
        if burst > BURST_FRAMES_PER_S:
            self.health.report("burst", f"{topic}: {burst} frames within one second: planning keeps to the "
                               f"newest, older requests are dropped", WARN)
        if self.view is not None:
            self.view.log_camera(rgb, int(stamp_s * 1e9), frame_id)
        if self._plan_due(stamp_s):
            self._request_plan()

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            index = {name: i for i, name in enumerate(msg.name)}
            missing = [name for name in self.state_joints if name not in index]
            if missing:
                raise ValueError(f"no entries {missing} (has {list(msg.name)})")
            if len(msg.position) != len(msg.name):
                raise ValueError(f"{len(msg.name)} names but {len(msg.position)} positions")
            state = np.array([msg.position[index[name]] for name in self.state_joints], np.float32)
            if not np.isfinite(state).all():
                raise ValueError(f"non-finite position {state.tolist()}")
        except ValueError as e:
            self.health.report("joint_state", f"joint_states: message ignored: {e}")
            return
        stamp_s = plan_messages.time_to_seconds(msg.header.stamp)
        if stamp_s == 0.0:  # unstamped: the node's clock stands in, as for frames
            stamp_s = self.get_clock().now().nanoseconds * 1e-9
        with self._lock:
            self._state = (stamp_s, state)
            self.states_received += 1

    def _current_state(self, frame_stamp_s: float) -> tuple[np.ndarray | None, str]:
        """The proprioception to plan with, or None and why; call with the lock held."""
        if self._state is None:
            return None, "no joint state yet on 'joint_states'"
        stamp_s, state = self._state
        if abs(frame_stamp_s - stamp_s) > self.params["max_state_age_s"]:
            return None, (f"the newest joint state is {frame_stamp_s - stamp_s:+.3f} s from the newest frame "
                          f"(max_state_age_s {self.params['max_state_age_s']})")
        return state, ""

    def _on_instruction(self, msg: String) -> None:
        text = msg.data.strip()
        if not text:
            self.health.report("empty_instruction", f"instruction: empty instruction ignored; still planning for "
                               f"{self.instruction!r}")
            return
        if text != self.instruction:
            self.get_logger().info(f"instruction: {text!r}")
        self.instruction = text

    def _plan_due(self, stamp_s: float) -> bool:
        """Whether the frame stamped ``stamp_s`` starts a new plan period. Plans start on a frame's
        arrival, not on a timer of their own: a timer would plan on a frame up to a camera period old,
        and every step a plan arrives late is a step of its actions the robot has already passed."""
        with self._lock:
            last = self._submitted_stamp
        period = self.params["plan_period_s"]
        # Half a control period of tolerance: a camera at the control rate jitters around the period.
        # A stamp before the last one (a replayed bag, a reset clock) starts afresh.
        return last is None or not 0.0 <= stamp_s - last < period - 0.5 * self.period_s

    def _on_plan_once(self, request, response):
        response.success, response.message = self._request_plan()
        return response

    def _request_plan(self) -> tuple[bool, str]:
        """Hand the newest context to the worker; returns (accepted, why)."""
        if not self.instruction:
            message = "no instruction yet: publish one on 'instruction' or set the 'instruction' parameter"
            self.health.report("no_instruction", message, WARN)
            return False, message
        with self._lock:
            if not len(self.context_buffer):
                return False, "no camera frame yet"
            state, why = None, ""
            if self.planner.needs_state:
                state, why = self._current_state(self.context_buffer.newest_stamp)
            if not why:
                request = PlanRequest(self.context_buffer.snapshot(), self.instruction,
                                      self.context_buffer.newest_stamp, self._frame_id, time.perf_counter(), state)
                self._submitted_stamp = request.stamp_s
        if why:
            self.health.report("no_state", f"not planning: {why}", WARN)
            return False, why
        self.worker.submit(request)
        return True, f"plan requested on the frame stamped {request.stamp_s:.3f}"

    # -- worker thread: plan, then publish ----------------------------------------------------------

    def _plan(self, request: PlanRequest):
        seed = self.params["seed"]
        seed = None if seed < 0 else seed + self._plans_started
        self._plans_started += 1
        return self.planner.plan(request.frames, request.instruction, steps=self.steps, seed=seed, state=request.state)

    def _publish_plan(self, request: PlanRequest, plan, planner_ms: float) -> None:
        header = Header(stamp=plan_messages.seconds_to_time(request.stamp_s), frame_id=request.frame_id)
        action_header = Header(stamp=header.stamp, frame_id=self.params["action_frame_id"])
        self.pub_event.publish(String(data=plan.caption))
        for image in plan_messages.foreseen_images(plan.frames, request.stamp_s, self.period_s, request.frame_id):
            self.pub_foreseen.publish(image)
        self.pub_strip.publish(plan_messages.rgb_to_image(
            plan_messages.strip_mosaic(request.frames, plan.frames), header))
        self.pub_plan.publish(plan_messages.actions_to_trajectory(plan.actions, action_header, self.period_s,
                                                                  self.max_step_m))
        self.pub_cmd.publish(plan_messages.action_to_twist(plan.actions[0], action_header, self.period_s,
                                                           self.max_step_m))
        done = time.perf_counter()
        latency_ms = (done - request.requested_s) * 1000  # includes waiting for a busy planner
        self.latency_ms.add(latency_ms)
        self.planner_ms.add(planner_ms)
        self.overhead_ms.add((done - request.started_s) * 1000 - planner_ms)  # encoding and publishing
        if self.view is not None:
            self.view.log_plan(plan.caption, plan.frames, int(request.stamp_s * 1e9), int(self.period_s * 1e9),
                               request.frame_id, {"plan_ms": latency_ms, "planner_ms": planner_ms,
                                                  "p50_ms": self.latency_ms.percentile(50),
                                                  "p95_ms": self.latency_ms.percentile(95)})

    def _planning_failed(self, request: PlanRequest, error: Exception) -> None:
        self.health.report("planning", f"planning failed ({type(error).__name__}: {error}); the next frame "
                           f"plans again")

    # -- diagnostics --------------------------------------------------------------------------------

    @property
    def dropped_frames(self) -> int:
        """Frames never planned on: rejected ones, and plan requests a newer frame replaced."""
        return self.frames_rejected + self.worker.requests_dropped

    def _publish_diagnostics(self) -> None:
        with self._lock:
            now = time.perf_counter()
            input_rate = sum(1 for t in self._arrivals if now - t <= 1.0)
        plans = self.worker.plans_done
        if not self.instruction:
            level, message = WARN, "waiting for an instruction"
        elif not plans:
            level, message = WARN, "no plan yet" if self.frames_received else "no camera frame yet"
        else:
            level, message = OK, f"{plans} plans"
        hardware_id = str(self.model_dir)
        planning = diagnostic_status(f"{self.get_fully_qualified_name()}: planning", hardware_id, level, message, {
            "backend": self.params["backend"], "device": self.params["device"], "model_dir": self.model_dir,
            "trained": self.planner.trained, "plans": plans,
            "plan_latency_p50_ms": _fmt(self.latency_ms.percentile(50)),
            "plan_latency_p95_ms": _fmt(self.latency_ms.percentile(95)),
            "planner_p50_ms": _fmt(self.planner_ms.percentile(50)),
            "node_overhead_p50_ms": _fmt(self.overhead_ms.percentile(50)),
            "input_rate_hz": input_rate, "frames_received": self.frames_received,
            "dropped_frames": self.dropped_frames, "plan_requests_dropped": self.worker.requests_dropped,
            "stale_plans_dropped": self.worker.plans_stale, "instruction": self.instruction,
            "reads_joint_states": self.planner.needs_state, "joint_states_received": self.states_received,
        })
        input_level, input_message = self.health.take()
        inputs = diagnostic_status(f"{self.get_fully_qualified_name()}: input", hardware_id, input_level,
                                   input_message or "ok", {"bad_" + k: v for k, v in self.health.counts.items()})
        self.pub_diagnostics.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()), status=[planning, inputs]))

    def close(self) -> None:
        """Stop the worker and the live view; the executor has stopped spinning."""
        self.worker.stop()
        if self.view is not None:
            self.view.close()


def _fmt(ms: float) -> str:
    return "n/a" if math.isnan(ms) else f"{ms:.1f}"


def main(args=None):
    raise SystemExit(spin_node(PlannerNode, "vans-ros-planner", args))


if __name__ == "__main__":
    main()
