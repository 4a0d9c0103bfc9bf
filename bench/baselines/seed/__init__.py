"""The design note's implementation taken literally: `app` (API) and `worker` (prefetch 1)."""
