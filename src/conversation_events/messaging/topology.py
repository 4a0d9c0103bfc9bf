"""Names and arguments of every exchange and queue.

Every component declares the topology from this one description, so the arguments are
identical everywhere (RabbitMQ refuses a re-declaration with different arguments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
        """Arguments of the main queue: quorum, dead-lettering, and a broker-side delivery cap."""
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": self.dead_letter_queue,
            "x-delivery-limit": self.delivery_limit,
        }

    @property
    def dead_letter_queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"}
