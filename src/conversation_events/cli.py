"""What the operator commands share: their parser, their database engine, their JSON output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from sqlalchemy import Engine

from conversation_events.logs import configure_logging
from conversation_events.settings import CommonSettings


def command_parser(
    prog: str, doc: str | None
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """A parser whose help is the module's docstring as written, and its required
    sub-commands (`parser.parse_args().command` names the one given)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser, parser.add_subparsers(dest="command", required=True)


@contextmanager
def command_engine(settings: CommonSettings, name: str) -> Iterator[Engine]:
    """Logs configured for the command `name` and a small engine (application name
    ``conversation-events-<name>``) for its run, disposed afterwards."""
    configure_logging(name, settings.log_level)
    engine = settings.make_engine(pool_size=2, application_name=f"conversation-events-{name}")
    try:
        yield engine
    finally:
        engine.dispose()


def print_json(document: object) -> None:
    """The command's result: one JSON line on standard output."""
    sys.stdout.write(orjson.dumps(document).decode() + "\n")
