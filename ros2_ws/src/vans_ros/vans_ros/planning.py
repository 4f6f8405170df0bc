"""Planning off the executor thread, with a queue of one.

The node's callbacks hand a :class:`PlanRequest` to :meth:`PlanWorker.submit`, which never blocks:
the request replaces any request still waiting (the newest frames win; the replaced one is counted
as dropped). One worker thread runs ``Planner.plan`` on the request it takes and hands the result to
``on_plan``. A finished plan whose instruction has changed meanwhile is stale and is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class PlanRequest:
    """Args:
        frames (`np.ndarray`): ``(T, S, S, 3)`` uint8 context, oldest first.
        instruction (`str`): what should happen.
        stamp_s (`float`): stamp of the newest frame, seconds; the plan's "now".
        frame_id (`str`): the camera's frame.
        requested_s (`float`): ``time.perf_counter()`` when the plan was requested, for latency.
        state (`np.ndarray`, *optional*): the robot's proprioception at the newest frame, for a
            checkpoint whose IDM reads it.
        started_s (`float`): ``time.perf_counter()`` when the worker took it (set by the worker).
    """

    frames: np.ndarray
    instruction: str
    stamp_s: float
    frame_id: str
    requested_s: float
    state: np.ndarray | None = None
    started_s: float = 0.0


class LatencyWindow:
    """The last ``size`` latencies in ms, with percentiles."""

    def __init__(self, size: int = 200):
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def percentile(self, q: float) -> float:
        with self._lock:
            return float(np.percentile(self._values, q)) if self._values else float("nan")

    def last(self) -> float:
        with self._lock:
            return self._values[-1] if self._values else float("nan")

    def __len__(self) -> int:
        return len(self._values)


class PlanWorker:
    """Args:
        plan_fn (`Callable[[PlanRequest], Plan]`): runs the planner.
        on_plan (`Callable[[PlanRequest, Plan, float], None]`): gets each fresh plan and the ms
            ``plan_fn`` took; runs on the worker thread.
        on_error (`Callable[[PlanRequest, Exception], None]`): gets a planning failure.
        current_instruction (`Callable[[], str]`): the instruction now; a plan made for another is stale.
    """

    def __init__(self, plan_fn: Callable, on_plan: Callable, on_error: Callable,
                 current_instruction: Callable[[], str]):
        self._plan_fn, self._on_plan, self._on_error = plan_fn, on_plan, on_error
        self._current_instruction = current_instruction
        self._pending: PlanRequest | None = None
        self._condition = threading.Condition()
        self._stopping = False
        self.busy = False
        self.requests_dropped = 0
        self.plans_stale = 0
        self.plans_done = 0
        self._thread = threading.Thread(target=self._run, name="vans-planner", daemon=True)
        self._thread.start()

    def submit(self, request: PlanRequest) -> None:
        with self._condition:
            if self._pending is not None:
                self.requests_dropped += 1
            self._pending = request
            self._condition.notify()

    def idle(self) -> bool:
        with self._condition:
            return self._pending is None and not self.busy

    def stop(self, timeout: float = 10.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                request, self._pending = self._pending, None
                self.busy = True
            try:
                request.started_s = time.perf_counter()
                plan = self._plan_fn(request)
                plan_ms = (time.perf_counter() - request.started_s) * 1000
                if request.instruction != self._current_instruction():
                    self.plans_stale += 1
                else:
                    self.plans_done += 1
                    self._on_plan(request, plan, plan_ms)
            except Exception as e:  # a failed plan must not end the worker: report it and wait for the next
                self._on_error(request, e)
            finally:
                with self._condition:
                    self.busy = False
