"""See bench/baselines/celery/README.md."""
