"""Baselines measured in the same run as our services (see docs/benchmarks.md)."""
