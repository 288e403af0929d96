"""`crm-kpi import`: backfill history from a CRM's CSV export, resumably (docs/import.md).

The whole file is mapped and validated first (bad rows are reported by line number, like
`replay`), then the events are published in chunks with replay's progress bar. After each
acknowledged chunk a checkpoint in `<CRMKPI_HOME>/imports/` records how many events and lines
are done; `--resume` skips exactly those events. Event ids are deterministic, so publishing an
event twice (importing again, resuming after a crash mid-chunk) is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiokafka.errors import KafkaError
from rich.console import Console

from crmkpi.discovery import find_services
from crmkpi.replay import BadLine, publish_with_progress, report_bad_lines
from crmkpi.settings import Settings, publisher_for
from streams.events import InvalidEvent, parse_event
from streams.exports import FORMATS, ExportFormat, RawEvent, Row, Unmappable
from streams.publisher import EventPublisher


class ExportError(ValueError):
    """A file that cannot be imported at all (not this format, changed since its checkpoint)."""


@dataclass
class MappedExport:
    """The events of an export file in file order, the line of each, and the rows left out."""

    path: str
    events: list[RawEvent] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    rows: int = 0
    skipped: int = 0
    last_line: int = 0

    def add(self, line: int, events: list[RawEvent] | str) -> None:
        """Record one row: its events, or the reason it has none (a bad row)."""
        self.rows += 1
        if isinstance(events, str):
            self.bad.append(BadLine(self.path, line, events))
            return
        self.skipped += not events
        self.events += events
        self.lines += [line] * len(events)

    def line_after(self, published: int) -> int:
        """The last line whose events are all among the first `published` events."""
        if published >= len(self.events):
            return self.last_line
        return self.lines[published] - 1


def map_export(
    path: Path, export: ExportFormat, zone: tzinfo, *, now_ms: int, known_currencies: frozenset[str]
) -> MappedExport:
    """Read and map a whole export; raises `ExportError` when the header is not this format's."""
    mapped = MappedExport(str(path))
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.reader(stream)
            header = next(reader, None) or []
            missing = export.missing(header)
            if missing:
                raise ExportError(f"{path}: not a {export.name} export: no column {', '.join(missing)} "
                                  f"(its columns: {', '.join(header)[:300]})")
            start = reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1
                if len(values) < 2:  # a blank line, or a report footer ("Confidential Information")
                    continue
                row = export.row(dict(zip(header, values, strict=False)), zone)
                mapped.add(line, _row_events(export, row, now_ms, known_currencies))
            mapped.last_line = reader.line_num
    except UnicodeDecodeError as error:
        raise ExportError(f"{path}: not UTF-8 text ({error}); re-export or convert it to UTF-8") from None
    return mapped


def _row_events(export: ExportFormat, row: Row, now_ms: int,
                known_currencies: frozenset[str]) -> list[RawEvent] | str:
    """A row's valid events, or why it has none."""
    try:
        events = export.events(row)
        for event in events:
            _validate(event, now_ms, known_currencies)
    except Unmappable as error:
        return str(error)
    return events


def _validate(event: RawEvent, now_ms: int, known_currencies: frozenset[str]) -> None:
    try:
        parse_event(event, now_ms=now_ms, known_currencies=known_currencies)
    except InvalidEvent as error:
        raise Unmappable(f"{event['type']}: {error}") from None


@dataclass(frozen=True)
class Checkpoint:
    """How far the import of one file got: `<home>/imports/<sha256 of path and size>.json`."""

    path: Path

    @classmethod
    def of(cls, home: Path, export_file: Path) -> Checkpoint:
        """The checkpoint of an export file (by its absolute path and size)."""
        resolved = export_file.resolve()
        key = hashlib.sha256(f"{resolved}\0{resolved.stat().st_size}".encode()).hexdigest()
        return cls(home / "imports" / f"{key}.json")

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None."""
        if not self.path.is_file():
            return None
        state: dict[str, Any] = orjson.loads(self.path.read_bytes())
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the saved state atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
        os.replace(partial, self.path)


def file_sha256(path: Path) -> str:
    """The file's content digest (a checkpoint only resumes the file it was written for)."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def resume_point(checkpoint: Checkpoint, export: ExportFormat, digest: str, total: int) -> int:
    """How many of the file's events earlier runs published (0 without a checkpoint)."""
    state = checkpoint.load()
    if state is None:
        return 0
    if state.get("format") != export.name:
        raise ExportError(f"the checkpoint of this file is for --format {state.get('format')}")
    if state.get("sha256") != digest or int(state["events"]) > total:
        raise ExportError("the file changed since its checkpoint; import it again without --resume "
                          "(already published events are counted once)")
    return int(state["events"])


class Publishing(Protocol):
    """What publishes events and waits for their acknowledgement (an `EventPublisher`)."""

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Publish; return the count."""


class CheckpointingPublisher:
    """The publisher replay's progress loop drives: after each acknowledged chunk it saves how
    many events (and whole lines) are done."""

    def __init__(self, publisher: Publishing, checkpoint: Checkpoint, state: Mapping[str, Any],
                 mapped: MappedExport, done: int) -> None:
        self.publisher = publisher
        self.checkpoint = checkpoint
        self.state = dict(state)
        self.mapped = mapped
        self.done = done
        self.save()

    async def publish(self, events: Sequence[RawEvent]) -> int:
        """Publish one chunk, then record it."""
        count = await self.publisher.publish(events)
        self.done += len(events)
        self.save()
        return count

    def save(self) -> None:
        """Record the current position."""
        self.checkpoint.save({**self.state, "events": self.done, "line": self.mapped.line_after(self.done),
                              "complete": self.done >= len(self.mapped.events)})


async def publish_export(publisher: Publishing, mapped: MappedExport, checkpoint: Checkpoint,
                         state: Mapping[str, Any], start: int, console: Console) -> CheckpointingPublisher:
    """Publish the events after the first `start`, checkpointing each chunk."""
    tracker = CheckpointingPublisher(publisher, checkpoint, state, mapped, start)
    await publish_with_progress(cast(EventPublisher, tracker), mapped.events[start:], console, "import")
    return tracker


@dataclass(frozen=True)
class ImportJob:
    """A mapped export, its checkpoint, and where publishing starts."""

    mapped: MappedExport
    checkpoint: Checkpoint
    state: dict[str, Any]
    start: int


def prepare(args: argparse.Namespace, settings: Settings) -> ImportJob:
    """Map the file and find the resume point; `ExportError` or `OSError` when impossible."""
    export, path = FORMATS[args.format], Path(args.file)
    zone_name = args.timezone or settings.timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExportError(f"unknown time zone {zone_name!r} (an IANA name, e.g. Europe/Paris)") from None
    mapped = map_export(path, export, zone, now_ms=time.time_ns() // 1_000_000,
                        known_currencies=settings.kpi_config.known_currencies)
    checkpoint, digest = Checkpoint.of(settings.home, path), file_sha256(path)
    start = resume_point(checkpoint, export, digest, len(mapped.events)) if args.resume else 0
    state = {"file": str(path.resolve()), "format": export.name, "sha256": digest}
    return ImportJob(mapped, checkpoint, state, start)


def run(args: argparse.Namespace, console: Console) -> int:
    """`crm-kpi import`: map, report, publish (unless `--dry-run`); 1 if any row was bad."""
    settings = Settings()
    try:
        job = prepare(args, settings)
    except (ExportError, OSError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return 2
    _describe(job, console)
    if args.dry_run:
        console.print("dry run: nothing published")
    elif job.start == len(job.mapped.events):
        console.print("nothing left to publish")
    elif not _publish(job, settings, console):
        return 2
    if job.mapped.bad:
        report_bad_lines(job.mapped.bad, console)
        return 1
    return 0


def _publish(job: ImportJob, settings: Settings, console: Console) -> bool:
    """Publish the job's remaining events; False (reported) when the broker fails."""

    async def publish() -> CheckpointingPublisher:
        publisher = await publisher_for(settings, find_services(settings).kafka_bootstrap)
        try:
            return await publish_export(publisher, job.mapped, job.checkpoint, job.state, job.start, console)
        finally:
            await publisher.stop()

    try:
        tracker = asyncio.run(publish())
    except KeyboardInterrupt:
        console.print(f"interrupted: {_position(job.checkpoint)}; `--resume` continues there")
        raise
    except KafkaError as error:
        console.print(f"[red]error:[/red] publishing failed ({error!r}): {_position(job.checkpoint)}; "
                      "`--resume` continues there", highlight=False)
        return False
    console.print(f"published {tracker.done - job.start} event(s)")
    return True


def _describe(job: ImportJob, console: Console) -> None:
    mapped = job.mapped
    console.print(f"{mapped.path}: {mapped.rows} row(s), {len(mapped.events)} event(s), "
                  f"{len(mapped.bad)} bad row(s), {mapped.skipped} without events", highlight=False)
    if job.start:
        console.print(f"resuming: {_position(job.checkpoint)}")
    elif (state := job.checkpoint.load()) is not None and not state.get("complete"):
        console.print(f"note: an earlier import of this file stopped ({_position(job.checkpoint)}); "
                      "`--resume` would continue there", highlight=False)


def _position(checkpoint: Checkpoint) -> str:
    state = checkpoint.load() or {"line": 1, "events": 0}
    return f"done up to line {state['line']} ({state['events']} event(s) published)"
