"""See bench/baselines/seed/README.md."""
