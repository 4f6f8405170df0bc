"""Bad input is counted, logged once in a while, and reported on ``/diagnostics``.

Every rejected message goes through :meth:`InputHealth.report`: it is counted by kind, the first
of a kind is logged at once and repeats at most every ``throttle_s`` (with how many were not
logged), and the worst level since the last diagnostics message is kept for the next one.
"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def diagnostic_status(name: str, hardware_id: str, level: int, message: str, values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


class InputHealth:
    def __init__(self, logger, throttle_s: float = 5.0):
        self._logger = logger
        self._throttle_s = throttle_s
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._level, self._message = OK, ""

    def report(self, kind: str, message: str, level: int = ERROR) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if level >= self._level:
                self._level, self._message = level, f"{kind}: {message}"
            now = time.monotonic()
            if now - self._last_logged.get(kind, -float("inf")) < self._throttle_s:
                self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
                return
            self._last_logged[kind] = now
            skipped = self._unlogged.pop(kind, 0)
        suffix = f" ({skipped} more since the last log line)" if skipped else ""
        # two call sites: rclpy refuses one call site logging at two severities
        if level == ERROR:
            self._logger.error(f"{message}{suffix}")
        else:
            self._logger.warning(f"{message}{suffix}")

    def take(self) -> tuple[int, str]:
        """The worst level and its message since the last call, then back to OK."""
        with self._lock:
            level, message = self._level, self._message
            self._level, self._message = OK, ""
        return level, message

    @property
    def total(self) -> int:
        return sum(self.counts.values())
