"""See bench/baselines/ceilings/README.md."""
