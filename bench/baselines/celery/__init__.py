"""The usual alternative: `app` (same endpoint, `task.delay`), `tasks` (tuned Celery worker)."""
