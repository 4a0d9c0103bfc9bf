"""Logging for failures that repeat: once when a cause appears, then a count now and then.

A broker that returns every message, or a burst the process sheds, fails thousands of times a
second; one line per failure would drown the log (and cost the CPU the overload is short of).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field


@dataclass(eq=False)
class ThrottledLog:
    """Logs `message` the first time each cause is recorded, then at most every `every_s`
    seconds per cause, with the number of failures since the previous line."""

    logger: logging.Logger
    message: str
    _: KW_ONLY
    every_s: float = 30.0
    level: int = logging.WARNING
    clock: Callable[[], float] = time.monotonic
    # cause -> (when its last line was logged, failures since then)
    _causes: dict[str, tuple[float, int]] = field(default_factory=dict, init=False, repr=False)

    def record(self, cause: str, count: int = 1, error: str = "") -> None:
        now = self.clock()
        last = self._causes.get(cause)
        if last is None:
            self._emit(cause, count, error, first=True)
            self._causes[cause] = (now, 0)
            return
        logged_at, since = last
        since += count
        if now - logged_at < self.every_s:
            self._causes[cause] = (logged_at, since)
            return
        self._emit(cause, since, error, first=False)
        self._causes[cause] = (now, 0)

    def _emit(self, cause: str, count: int, error: str, *, first: bool) -> None:
        extra: dict[str, object] = {"cause": cause, "count": count, "first": first}
        if error:
            extra["error"] = error
        if not first:
            extra["period_s"] = self.every_s
        self.logger.log(self.level, self.message, extra=extra)
