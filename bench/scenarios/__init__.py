"""The measured scenarios, one module each, around one setup and teardown (``common``).

Each scenario starts what it measures inside :func:`~bench.scenarios.common.isolated` (its own
database and queues), drives it, verifies that nothing was lost, and returns plain numbers
(dicts) for the report; ``isolated`` stops everything and removes what the run created.
"""

from bench.scenarios.accept import accept_path
from bench.scenarios.autoscaling import autoscaling, rate_step
from bench.scenarios.backlog import preload_template
from bench.scenarios.bulk import bulk
from bench.scenarios.ceilings import ceilings
from bench.scenarios.common import SYSTEMS, Config
from bench.scenarios.curve import curve, system_curve
from bench.scenarios.growth import growth
from bench.scenarios.lag import STACK_API_PROCESSES, lag
from bench.scenarios.overload import overload
from bench.scenarios.processing import processing
from bench.scenarios.purge import purge
from bench.scenarios.scalein import scale_in
from bench.scenarios.tracing import tracing_cost

__all__ = [
    "STACK_API_PROCESSES",
    "SYSTEMS",
    "Config",
    "accept_path",
    "autoscaling",
    "bulk",
    "ceilings",
    "curve",
    "growth",
    "lag",
    "overload",
    "preload_template",
    "processing",
    "purge",
    "rate_step",
    "scale_in",
    "system_curve",
    "tracing_cost",
]
