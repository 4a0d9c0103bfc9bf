"""The scaler's input: one queue's depth from the RabbitMQ management HTTP API.

``GET /api/queues/{vhost}/{queue}`` answers ``messages_ready``, ``messages_unacknowledged``,
``messages`` and ``consumers`` as of the broker's last statistics sample (every 5 s by default),
so the numbers are a few seconds old; the decision copes with that (see ``stats_lag_s``). The
publish rate is ``message_stats.publish_details.rate`` (messages/s over the last samples), the
number KEDA's ``MessageRate`` mode reads; a queue nobody published to has no ``message_stats``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from conversation_events.messaging.brokers import split_urls
from conversation_events.messaging.policy import NoNodeAnswered, first_answer
from conversation_events_scaler.decision import Observation
from conversation_events_scaler.errors import MetricsUnavailable


def queue_url(base_url: str, vhost: str, queue: str) -> str:
    """The management API URL of one queue; vhost and queue are fully percent-encoded.

    >>> queue_url("http://127.0.0.1:15672/", "/", "q")
    'http://127.0.0.1:15672/api/queues/%2F/q'
    """
    return f"{base_url.rstrip('/')}/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"


class ManagementApiSource:
    """Reads one queue's ready, unacked and consumer counts; failures: ``MetricsUnavailable``.

    ``base_url`` may list several comma-separated URLs, one per node of a cluster (each node's
    API reports the whole cluster's queues): a read goes to the node that answered last, and
    moves on to the next when that one is unreachable or answers 5xx.
    """

    def __init__(
        self,
        base_url: str,
        vhost: str,
        queue: str,
        *,
        user: str,
        password: str,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.urls = [queue_url(base, vhost, queue) for base in split_urls(base_url, "management")]
        self._live = 0
        self.vhost = vhost
        self.queue = queue
        self._client = httpx.Client(
            auth=(user, password),
            timeout=httpx.Timeout(timeout_s),
            headers={"Accept": "application/json"},
            transport=transport,
        )

    @property
    def url(self) -> str:
        """The queue's URL on the node read first."""
        return self.urls[self._live]

    def read(self) -> Observation:
        """One sample of the queue.

        Raises ``MetricsUnavailable`` when no node's API answers in time, or the one that
        answers gives an error (401: credentials, 404: no such vhost or queue yet) or has no
        statistics for the queue yet (a queue declared a moment ago).
        """
        response = self._get()
        if response.status_code == 404:
            raise MetricsUnavailable(
                f"queue {self.queue!r} in vhost {self.vhost!r} not found (not declared yet?)"
            )
        if response.status_code in (401, 403):
            raise MetricsUnavailable(
                f"management API refused the credentials (HTTP {response.status_code}); "
                "the user needs the `monitoring` tag and access to the vhost"
            )
        if response.status_code != 200:
            raise MetricsUnavailable(
                f"management API answered HTTP {response.status_code} for {self.url}"
            )
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise MetricsUnavailable(f"management API answered non-JSON for {self.url}") from exc
        return _observation(body, self.queue)

    def _get(self) -> httpx.Response:
        """The answer of the first node that answers below 500, from the last live one."""
        # The columns parameter keeps the answer small on queues with many consumers.
        params = {
            "columns": "messages,messages_ready,messages_unacknowledged,consumers,"
            "message_stats.publish_details.rate"
        }
        try:
            self._live, response = first_answer(
                self.urls, self._live, lambda url: self._client.get(url, params=params)
            )
        except NoNodeAnswered as exc:
            raise MetricsUnavailable(f"management API unreachable at {exc}") from exc
        return response

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ManagementApiSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _observation(body: Any, queue: str) -> Observation:
    if body == []:  # what `columns=` yields while the queue has no statistics yet
        raise MetricsUnavailable(f"no statistics for queue {queue!r} yet")
    if not isinstance(body, dict):
        raise MetricsUnavailable(f"unexpected management API answer for queue {queue!r}")
    ready = body.get("messages_ready")
    unacked = body.get("messages_unacknowledged")
    total = body.get("messages")
    if ready is None and unacked is None and total is None:
        raise MetricsUnavailable(f"no statistics for queue {queue!r} yet")
    return Observation(
        ready=int(ready or 0),
        unacked=int(unacked or 0),
        consumers=int(body.get("consumers") or 0),
        total=None if total is None else int(total),
        publish_rate=_publish_rate(body),
    )


def _publish_rate(body: dict[str, Any]) -> float:
    """Messages/s published to the queue; 0 when the broker has no publish statistics yet."""
    stats = body.get("message_stats")
    details = stats.get("publish_details") if isinstance(stats, dict) else None
    rate = details.get("rate") if isinstance(details, dict) else None
    try:
        return max(0.0, float(rate or 0.0))
    except (TypeError, ValueError):
        return 0.0
