"""The API applies the queue policy on start unless `CE_QUEUE_POLICY_ON_START` leaves it to the
migration step (a broker user without the `policymaker` tag could not)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tests.support.services import management_api, wait_for

from conversation_events.messaging.topology import Topology


def test_the_policy_is_applied_on_start_only_when_asked(
    make_client: Callable[..., httpx.Client], names: tuple[str, str]
) -> None:
    exchange, queue = names
    policy = Topology(exchange, queue, 1).policy_name
    api = management_api()

    def policy_status() -> int:
        return api.request("GET", "policies", api.vhost, policy).status_code

    # Ready means started: its publisher has declared the queue, and no policy was applied.
    make_client(queue_policy_on_start=False)
    assert policy_status() == 404
    make_client()
    wait_for(lambda: policy_status() == 200, timeout=15, what="the policy applied on start")
