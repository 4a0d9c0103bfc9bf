"""Benchmarks: our pipeline against the design note's, a Celery build and the machine's ceilings.

Run with `scripts/bench` (see docs/benchmarks.md). Every scenario starts its own processes with
their own database and queue names, measures, verifies and cleans up.
"""
