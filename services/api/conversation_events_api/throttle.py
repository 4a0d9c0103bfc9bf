"""Logging for failures that repeat: once when a cause appears, then a count now and then.

A broker that returns every message, or a burst the process sheds, fails thousands of times a
second; one line per failure would drown the log (and cost the CPU the overload is short of).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledLog:
    """Logs `message` the first time each cause is recorded, then at most every `every_s`
    seconds per cause, with the number of failures since the previous line."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        every_s: float = 30.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._message = message
        self._every = every_s
        self._level = level
        self._clock = clock
        # cause -> (when its last line was logged, failures since then)
        self._causes: dict[str, tuple[float, int]] = {}

    def record(self, cause: str, count: int = 1, error: str = "") -> None:
        now = self._clock()
        last = self._causes.get(cause)
        if last is None:
            self._emit(cause, count, error, first=True)
            self._causes[cause] = (now, 0)
            return
        logged_at, since = last
        since += count
        if now - logged_at < self._every:
            self._causes[cause] = (logged_at, since)
            return
        self._emit(cause, since, error, first=False)
        self._causes[cause] = (now, 0)

    def _emit(self, cause: str, count: int, error: str, *, first: bool) -> None:
        extra: dict[str, object] = {"cause": cause, "count": count, "first": first}
        if error:
            extra["error"] = error
        if not first:
            extra["period_s"] = self._every
        self._logger.log(self._level, self._message, extra=extra)
