"""The scaler's errors, as branches of the project's retryable / permanent tree.

Client-library exceptions (httpx, kubernetes ``ApiException``, urllib3) are translated into these
where they are raised, so the loop only asks: will trying again later help?
"""

from __future__ import annotations

from conversation_events.errors import PermanentError, RetryableError


class MetricsUnavailable(RetryableError):
    """The management API did not answer, answered an error, or has no statistics yet."""


class ActuatorUnavailable(RetryableError):
    """The Kubernetes API (or the local process table) could not be reached or timed out."""


class ScaleConflict(RetryableError):
    """The API server refused the change because the object changed meanwhile (HTTP 409)."""


class ScaleTargetNotFound(PermanentError):
    """The worker Deployment (or its ``scale`` subresource) does not exist (HTTP 404)."""


class ScaleForbidden(PermanentError):
    """The scaler's identity may not read or patch the target (HTTP 401/403): fix the RBAC."""
