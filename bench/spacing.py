"""The same work, back to back and spaced out: `python -m bench.spacing`.

Validates and prepares (`to_event`) realistic request bodies one at a time and prints the CPU
each took (the thread's own CPU time), first back to back, then with a pause after each, as
requests arrive at light load; then what a pause alone costs (the process's CPU for sleeping
and waking up). What the pause changes is the machine (caches, predictors, the virtual CPU's
state), not the code: it is why every process costs more per event at light load than at
saturation.
"""

from __future__ import annotations

import random
import resource
import time

import orjson

from bench import payloads
from conversation_events_api.schemas import ConversationEndRequest

#: Bodies per measurement, and the pauses after each (seconds; 0.01 s is 100 requests/s).
BODIES = 300
GAPS = (0.0, 0.001, 0.01, 0.05)


def cpu_per_body(bodies: list[bytes], gap: float) -> float:
    """Mean thread CPU seconds to validate and prepare one body, pausing `gap` after each."""
    spent = 0.0
    for body in bodies:
        started = time.thread_time()
        ConversationEndRequest.model_validate_json(body).to_event()
        spent += time.thread_time() - started
        if gap:
            time.sleep(gap)
    return spent / len(bodies)


def cpu_per_pause(gap: float, count: int = BODIES) -> float:
    """The process's CPU seconds (user and system) per `gap`-long sleep and wake-up."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(count):
        time.sleep(gap)
    after = resource.getrusage(resource.RUSAGE_SELF)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return spent / count


def main() -> None:
    rng = random.Random(3)
    bodies = [orjson.dumps(payloads.body(rng, f"c-{i}", f"u-{i}")) for i in range(BODIES)]
    cpu_per_body(bodies, 0.0)  # warm: imports, validator caches
    base = None
    for gap in GAPS:
        cost = cpu_per_body(bodies, gap)
        base = base or cost
        print(
            f"pause {1000 * gap:5.1f} ms after each body: {1e6 * cost:6.1f} µs of CPU per body"
            f" ({cost / base:.1f}× back to back)"
        )
    for gap in GAPS[2:]:
        print(f"a {1000 * gap:.0f} ms pause alone: {1e6 * cpu_per_pause(gap):6.1f} µs of CPU")


if __name__ == "__main__":
    main()
