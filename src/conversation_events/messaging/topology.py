"""Names and arguments of every exchange and queue, and the policy of the main queue.

Every component declares the topology from this one description. Queues are declared with
their type only, because RabbitMQ refuses a re-declaration with other arguments: what may
change between releases (dead-lettering, the delivery limit) is in `policy`, which RabbitMQ
applies to a live queue (see `policy.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Priority of the product's queue policy. RabbitMQ applies one policy per queue, the highest
#: priority among those whose pattern matches; an operator's own policy for this queue must
#: carry these keys too, or sit below this priority.
POLICY_PRIORITY = 10


@dataclass(frozen=True, slots=True)
class Topology:
    """The main exchange and quorum queue, and their dead-letter pair."""

    exchange: str
    queue: str
    delivery_limit: int

    @property
    def routing_key(self) -> str:
        return self.queue

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    @property
    def queue_arguments(self) -> dict[str, Any]:
        """Declared arguments of the main queue: its type only (the rest is in `policy`)."""
        return {"x-queue-type": "quorum"}

    @property
    def policy_name(self) -> str:
        return f"conversation-events.{self.queue}"

    @property
    def policy(self) -> dict[str, Any]:
        """The management API body of the main queue's policy.

        Dead letters go to the dead-letter exchange at least once (RabbitMQ keeps a message in
        the source queue until the dead-letter queue confirms it, which requires
        `reject-publish` overflow); the delivery limit is the broker-side backstop of the
        attempts counted in PostgreSQL.
        """
        return {
            "pattern": f"^{re.escape(self.queue)}$",
            "apply-to": "queues",
            "priority": POLICY_PRIORITY,
            "definition": {
                "dead-letter-exchange": self.dead_letter_exchange,
                "dead-letter-routing-key": self.dead_letter_queue,
                "dead-letter-strategy": "at-least-once",
                "overflow": "reject-publish",
                "delivery-limit": self.delivery_limit,
            },
        }

    @property
    def dead_letter_queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"}
