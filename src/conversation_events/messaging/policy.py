"""The queue policy: the queue arguments that may change, applied through the management API.

Queues are declared with their type only (`Topology.queue_arguments`); dead-lettering and the
delivery limit come from a RabbitMQ policy that the product applies itself, idempotently, on
start and in the deployment's migration step. A policy, unlike a declared argument, can change
on a live queue: `CE_DELIVERY_LIMIT` may differ from one release to the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

import httpx

from conversation_events.errors import BrokerUnavailable, PermanentError
from conversation_events.messaging.brokers import amqp_urls, split_urls
from conversation_events.messaging.topology import Topology

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ManagementApi:
    """Where the RabbitMQ management HTTP API is, for one vhost.

    `base_urls` holds one URL per node for a cluster (any node's API manages the whole
    cluster). Calls go to the node that answered last; when it is unreachable or answers 5xx
    the call moves on to the next, so a process keeps working while nodes come and go.
    """

    base_urls: tuple[str, ...]
    vhost: str
    user: str
    password: str
    timeout_s: float = 5.0
    _live: int = field(default=0, repr=False, compare=False)

    @classmethod
    def for_broker(
        cls, management_url: str, amqp_url: str, timeout_s: float = 5.0
    ) -> ManagementApi:
        """The API at `management_url` (one URL, or several comma-separated), for the AMQP
        URL's vhost.

        Credentials come from the userinfo of the first management URL that has some, else
        from the AMQP URL (the same broker user).
        """
        amqp = urlsplit(amqp_urls(amqp_url)[0])
        nodes = [urlsplit(url) for url in split_urls(management_url, "management API")]
        source = next((n for n in nodes if n.username is not None), amqp)
        path = amqp.path
        return cls(
            base_urls=tuple(_without_userinfo(n) for n in nodes),
            vhost=unquote(path[1:]) if len(path) > 1 else "/",
            user=unquote(source.username or "guest"),
            password=unquote(source.password or ""),
            timeout_s=timeout_s,
        )

    @property
    def base_url(self) -> str:
        """The node the next call goes to first."""
        return self.base_urls[self._live]

    def url(self, *parts: str) -> str:
        return _api_url(self.base_url, parts)

    def request(self, method: str, *parts: str, json: Any = None) -> httpx.Response:
        """One call, to the first node that answers.

        Every node unreachable or answering 5xx is `BrokerUnavailable` (naming each one's
        trouble); a 4xx other than 404 is `PermanentError`.
        """
        try:
            self._live, response = first_answer(
                self.base_urls,
                self._live,
                lambda base: httpx.request(
                    method,
                    _api_url(base, parts),
                    json=json,
                    auth=(self.user, self.password),
                    timeout=self.timeout_s,
                ),
            )
        except NoNodeAnswered as exc:
            raise BrokerUnavailable(f"management API unreachable: {exc}") from exc
        if response.status_code >= 400 and response.status_code != 404:
            raise PermanentError(
                f"management API refused {method} {'/'.join(parts)}: "
                f"{response.status_code} {response.text[:200]}"
            )
        return response


class NoNodeAnswered(Exception):
    """No node's management API answered; the message names each one's trouble."""


def first_answer(
    urls: Sequence[str], start: int, call: Callable[[str], httpx.Response]
) -> tuple[int, httpx.Response]:
    """`call` on each URL in turn from `start` on: the index and response of the first that
    answers below 500. A connection error, a timeout or a 5xx moves on to the next."""
    troubles = []
    for step in range(len(urls)):
        node = (start + step) % len(urls)
        try:
            response = call(urls[node])
        except httpx.HTTPError as exc:
            troubles.append(f"{urls[node]}: {exc!r}")
            continue
        if response.status_code >= 500:
            troubles.append(f"{urls[node]}: answered {response.status_code}")
            continue
        return node, response
    raise NoNodeAnswered("; ".join(troubles))


def _without_userinfo(url: SplitResult) -> str:
    netloc = url.hostname or "127.0.0.1"
    if url.port:
        netloc = f"{netloc}:{url.port}"
    return urlunsplit((url.scheme, netloc, url.path.rstrip("/"), "", ""))


def _api_url(base: str, parts: tuple[str, ...]) -> str:
    return "/".join([base, "api", *(quote(p, safe="") for p in parts)])


def apply_queue_policy(api: ManagementApi, topology: Topology) -> None:
    """Create or update the main queue's policy (idempotent: the same PUT every time)."""
    api.request(
        "PUT", "policies", api.vhost, topology.policy_name, json=topology.policy
    ).raise_for_status()
    log.info(
        "queue policy applied",
        extra={"policy": topology.policy_name, "delivery_limit": topology.delivery_limit},
    )


def ensure_queue_policy(api: ManagementApi, topology: Topology) -> bool:
    """`apply_queue_policy` at a process's start, best effort: False (logged) when it failed.

    A failure is not fatal: the policy persists in the broker once applied (by the migration
    step or an earlier start), and events are never lost without it; only its limits and the
    dead-lettering would be missing, so it is logged as an error.
    """
    try:
        apply_queue_policy(api, topology)
        return True
    except (BrokerUnavailable, PermanentError, httpx.HTTPError) as exc:
        log.error(
            "could not apply the queue policy",
            extra={"policy": topology.policy_name, "error": str(exc)},
        )
        return False


def apply_queue_policy_until(api: ManagementApi, topology: Topology, timeout_s: float) -> None:
    """`apply_queue_policy`, retried while the broker is unavailable, for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        try:
            apply_queue_policy(api, topology)
            return
        except BrokerUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.info("waiting for the management API", extra={"error": str(exc)})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def declared_arguments(api: ManagementApi, queue: str) -> dict[str, Any] | None:
    """The arguments a queue was declared with, or None when it does not exist."""
    response = api.request("GET", "queues", api.vhost, queue)
    if response.status_code == 404:
        return None
    arguments: dict[str, Any] = response.json().get("arguments") or {}
    return arguments


def legacy_arguments(api: ManagementApi, topology: Topology) -> dict[str, Any]:
    """Arguments the main queue carries beyond its type (left by an earlier version)."""
    arguments = declared_arguments(api, topology.queue) or {}
    return {k: v for k, v in arguments.items() if k not in topology.queue_arguments}
