"""Import finished conversations from a JSON Lines file through the batch endpoint.

    CE_IMPORT_API_KEY=<key> conversation-events-import FILE --url URL
        [--batch-size 500] [--max-bytes N] [--from-line N] [--retry-for S]

Each line of FILE is one conversation, as the body of `POST /v1/conversations/end`; blank lines
are skipped. Lines go to `POST /v1/conversations/end:batch` in batches (at most `--batch-size`
conversations and `--max-bytes` bytes each; a batch the server finds too large is split). The key
(scope `ingest`; the conversations go to its tenant) is read from `CE_IMPORT_API_KEY`, never
from the command line. Progress goes to standard error, and each line that is not stored as
written (`invalid`, `conflict`) is named there with its reasons (never its content). The summary
is one JSON line on standard output.

Resumable: a line sent again is a `duplicate` of what it stored the first time, so an import
that was interrupted may simply be run again (or from the `next_line` of its last progress).
A `503` is retried after its `Retry-After`, a lost connection after a short pause, for at most
`--retry-for` seconds. Exit code 0 when every line was stored or was a duplicate (or belongs to
an erased user), 1 when a line was invalid or conflicting, 2 when the import stopped early.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import orjson

from conversation_events.cli import print_json
from conversation_events_api.schemas import MAX_BATCH_ITEMS

PATH = "/v1/conversations/end:batch"
KEY_VARIABLE = "CE_IMPORT_API_KEY"
STATUSES = ("accepted", "duplicate", "conflict", "erased", "invalid")
#: Default byte bound of one batch: under the API's default CE_MAX_BATCH_BODY_BYTES (4 MiB).
DEFAULT_MAX_BYTES = 3_500_000
_ENVELOPE = (b'{"conversations":[', b"]}")


class Stopped(Exception):
    """The import cannot go on (refused key, unreachable server past the retry window)."""


@dataclass
class Tally:
    """What the import did so far, and where it is in the file."""

    total_bytes: int
    counts: Counter[str] = field(default_factory=Counter)
    read_bytes: int = 0
    next_line: int = 1
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        return {
            "lines": sum(self.counts.values()),
            **{status: self.counts[status] for status in STATUSES},
            "next_line": self.next_line,
            "seconds": round(seconds, 3),
        }

    def progress(self) -> str:
        done = sum(self.counts.values())
        rate = done / max(1e-9, time.monotonic() - self.started)
        share = self.read_bytes / self.total_bytes if self.total_bytes else 1.0
        parts = ", ".join(f"{self.counts[s]} {s}" for s in STATUSES)
        return f"{share:6.1%}  next line {self.next_line}: {parts} ({rate:.0f}/s)"


@dataclass
class Importer:
    client: httpx.Client
    retry_for_s: float

    def send(self, batch: Sequence[tuple[int, bytes]], tally: Tally) -> None:
        """Send one batch of (line number, line) and count its results."""
        response = self._post(b",".join(line for _, line in batch).join(_ENVELOPE))
        if response.status_code == 413 and len(batch) > 1:
            half = len(batch) // 2
            self.send(batch[:half], tally)
            self.send(batch[half:], tally)
            return
        if response.status_code == 413:
            self._note(batch[0][0], "invalid", ["larger than the server accepts in a batch"])
            tally.counts["invalid"] += 1
            return
        if response.status_code != 200:
            raise Stopped(f"the server answered {response.status_code}: {_detail(response)}")
        for result in response.json()["results"]:
            line = batch[result["index"]][0]
            status = result["status"]
            tally.counts[status] += 1
            if status == "invalid":
                self._note(line, status, [_reason(e) for e in result.get("errors", [])])
            elif status == "conflict":
                self._note(line, status, [f"stored with other content as {result['event_id']}"])

    def _post(self, body: bytes) -> httpx.Response:
        """The answer that is not a 503, retried past 503s and lost connections."""
        give_up = time.monotonic() + self.retry_for_s
        pause = 0.5
        while True:
            try:
                response = self.client.post(
                    PATH, content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as exc:
                wait, why = pause, f"connection failed ({type(exc).__name__})"
                pause = min(pause * 2, 10.0)
            else:
                if response.status_code != 503:
                    return response
                wait, why = float(response.headers.get("Retry-After", "1")), "503"
            if time.monotonic() + wait > give_up:
                raise Stopped(f"gave up after {self.retry_for_s:g} s of retries: {why}")
            sys.stderr.write(f"\nretrying in {wait:g} s: {why}\n")
            time.sleep(wait)

    def _note(self, line: int, status: str, reasons: list[str]) -> None:
        sys.stderr.write(f"\nline {line}: {status}: {'; '.join(reasons)}\n")


def _reason(error: dict[str, Any]) -> str:
    """`field.path: message` of one field error, without the input it echoes."""
    where = ".".join(str(part) for part in error.get("loc", [])[3:]) or "conversation"
    return f"{where}: {error.get('msg', 'invalid')}"


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))[:200]
    except ValueError:
        return response.text[:200]


def batches(
    lines: Iterator[tuple[int, bytes]], size: int, max_bytes: int, tally: Tally
) -> Iterator[list[tuple[int, bytes]]]:
    """Lines grouped into batches of at most `size` lines and about `max_bytes` bytes; a line
    that is not JSON is counted invalid here and never sent."""
    batch: list[tuple[int, bytes]] = []
    weight = 0
    for number, line in lines:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            sys.stderr.write(f"\nline {number}: invalid: not JSON ({exc.msg})\n")
            tally.counts["invalid"] += 1
            continue
        if batch and (len(batch) >= size or weight + len(line) + 1 > max_bytes):
            yield batch
            batch, weight = [], 0
        batch.append((number, line))
        weight += len(line) + 1
    if batch:
        yield batch


def numbered_lines(source: BinaryIO, from_line: int, tally: Tally) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped line) of each non-blank line from `from_line` on."""
    for number, raw in enumerate(source, start=1):
        tally.read_bytes += len(raw)
        line = raw.strip()
        if number >= from_line and line:
            yield number, line


def run(args: argparse.Namespace, key: str) -> tuple[int, dict[str, Any]]:
    """Import the file; returns the exit code and the summary."""
    tally = Tally(total_bytes=args.file.stat().st_size, next_line=args.from_line)
    interactive = sys.stderr.isatty()
    with (
        httpx.Client(base_url=args.url, headers={"X-API-Key": key}, timeout=60) as client,
        args.file.open("rb") as source,
    ):
        importer = Importer(client, args.retry_for)
        try:
            for batch in batches(
                numbered_lines(source, args.from_line, tally),
                args.batch_size,
                args.max_bytes,
                tally,
            ):
                importer.send(batch, tally)
                tally.next_line = batch[-1][0] + 1
                sys.stderr.write(("\r" if interactive else "") + tally.progress())
                sys.stderr.write("" if interactive else "\n")
        except Stopped as exc:
            sys.stderr.write(
                f"\nimport stopped: {exc}; resume with --from-line {tally.next_line}\n"
            )
            return 2, tally.summary()
    sys.stderr.write("\n" if interactive else "")
    failed = tally.counts["invalid"] + tally.counts["conflict"]
    return (1 if failed else 0), tally.summary()


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="conversation-events-import",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="JSON Lines: one conversation a line")
    parser.add_argument("--url", required=True, help="the API's base URL, e.g. http://host:8000")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=MAX_BATCH_ITEMS,
        choices=range(1, MAX_BATCH_ITEMS + 1),
        metavar=f"1..{MAX_BATCH_ITEMS}",
    )
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="per batch")
    parser.add_argument("--from-line", type=int, default=1, help="skip the lines before this one")
    parser.add_argument(
        "--retry-for", type=float, default=300.0, help="seconds of retries before giving up"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    key = os.environ.get(KEY_VARIABLE, "")
    if not key:
        sys.stderr.write(f"{KEY_VARIABLE} must hold an API key with the ingest scope\n")
        return 2
    code, summary = run(args, key)
    print_json(summary)
    return code


if __name__ == "__main__":
    sys.exit(main())
