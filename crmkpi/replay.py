"""`crm-kpi replay`: publish canonical events from JSON Lines files, or report bad lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from streams.events import InvalidEvent, parse_event
from streams.publisher import EventPublisher

CHUNK = 5000


@dataclass(frozen=True)
class BadLine:
    """One line that is not a valid canonical event."""

    path: str
    line: int
    problem: str


def read_events(
    stream: IO[bytes], path: str, known_currencies: frozenset[str], now_ms: int
) -> Iterator[tuple[Any, BadLine | None]]:
    """Yield `(event, None)` for each valid line and `(None, BadLine)` for each bad one."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            parse_event(raw, now_ms=now_ms, known_currencies=known_currencies)
        except orjson.JSONDecodeError as exc:
            yield None, BadLine(path, number, f"not JSON: {exc}")
        except InvalidEvent as exc:
            yield None, BadLine(path, number, str(exc))
        else:
            yield raw, None


def validate_files(
    paths: list[str], known_currencies: frozenset[str], now_ms: int
) -> tuple[list[Any], list[BadLine]]:
    """Read every file (`-` is stdin); returns the valid events and the bad lines."""
    events: list[Any] = []
    bad: list[BadLine] = []
    for path in paths:
        with _open(path) as stream:
            for event, problem in read_events(stream, path, known_currencies, now_ms):
                if problem is None:
                    events.append(event)
                else:
                    bad.append(problem)
    return events, bad


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return Path(path).open("rb")


async def publish_with_progress(
    publisher: EventPublisher, events: list[Any], console: Console, label: str = "replay"
) -> None:
    """Publish in chunks, showing a progress bar with rate and ETA."""
    columns = (TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total} events"),
               TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=len(events), rate="")
        for start in range(0, len(events), CHUNK):
            chunk = events[start:start + CHUNK]
            await publisher.publish(chunk)
            progress.advance(task, len(chunk))
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:,.0f} events/s" if speed else "")


def report_bad_lines(bad: list[BadLine], console: Console, limit: int = 50) -> None:
    """Print a line-numbered report of bad lines."""
    console.print(f"[red]{len(bad)} bad line(s) were not published[/red]")
    for line in bad[:limit]:
        console.print(f"{line.path}:{line.line}: {line.problem}", markup=False, highlight=False)
    if len(bad) > limit:
        console.print(f"... and {len(bad) - limit} more")
