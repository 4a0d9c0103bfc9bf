"""What one API process holds for its lifetime, built once in `create_app`'s lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from conversation_events.messaging.topology import Topology
from conversation_events_api.settings import ApiSettings

if TYPE_CHECKING:
    from conversation_events_api.publisher import Publisher
    from conversation_events_api.relay import Relay
    from conversation_events_api.security import KeyRing
    from conversation_events_api.writer import EventWriter


@dataclass
class AppState:
    settings: ApiSettings
    topology: Topology
    engine: Engine
    writer: EventWriter
    publisher: Publisher
    relay: Relay
    keys: KeyRing
    #: Batch requests being handled now (CE_MAX_BATCHES_IN_FLIGHT); the event loop's alone.
    batches_in_flight: int = 0
