"""Turning records of an input topic into state changes, dead letters or forwards."""

from __future__ import annotations

import logging
import reprlib
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.state import StateKeeper
from kpis.partition import position
from streams.codec import UndecodableRecord, decode_record
from streams.events import Event, InvalidEvent, parse_event
from streams.internal import decode_internal
from streams.topics import partition_for, routed_for, routing_key

log = logging.getLogger("crm-kpi.ingest")

# Validates one decoded event (raising InvalidEvent) at the given engine time.
Parser = Callable[[Any, int], Event]
# The partition where a decoded event's state lives.
Router = Callable[[Any], int]


# Faust's worker leaves the root logger at DEBUG after its start-up spinner (its handlers
# show WARNING and up), so every debug call of the Kafka client (one per record sent) built a
# LogRecord for nothing. Their own level makes those calls return at once.
for _name in ("aiokafka", "faust", "mode"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.INFO)


def wall_ms() -> int:
    """The engine clock: wall time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass
class RecordOutcome:
    """What applying one record asks the agent to send on."""

    dead_letters: list[tuple[bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    forwards: list[tuple[int, Any]] = field(default_factory=list)


class RecordApplier:
    """Decodes, validates and applies the events of a record to the partition's state."""

    def __init__(self, keeper: StateKeeper, parse: Parser, home: Router, topic: str,
                 partitions: int) -> None:
        self.keeper = keeper
        self.topic = topic
        self.parse = parse
        self.home = home
        self.routed = routed_for(partitions)
        self.last_applied_ms = 0
        # Per partition, the offset after the last record whose batch is done: applied, its
        # sends acknowledged and its state written (what `lag` counts from).
        self.next_offsets: dict[int, int] = {}

    def done(self, messages: Iterable[Any]) -> None:
        """Mark Kafka messages (with `partition` and `offset`) as done: applied, sent, written."""
        self.next_offsets.update((m.partition, m.offset + 1) for m in messages)

    def apply(self, partition: int, offset: int, value: bytes | None, now_ms: int,
              headers: Container[Any] | None = None) -> RecordOutcome:
        """Apply one record; invalid events become dead letters, misrouted ones forwards.

        Records of the engine's own producers, routed for this partition count (a header),
        are not routed again.
        """
        outcome = RecordOutcome()
        routed = headers is not None and self.routed in headers
        state = self.keeper.state(partition)
        provenance = [("topic", self.topic.encode()), ("partition", str(partition).encode()),
                      ("offset", str(offset).encode())]
        try:
            raws = decode_record(value)
        except UndecodableRecord as undecodable:
            state.reject(position(offset, 0))
            outcome.dead_letters.append((value or b"", [("reason", str(undecodable).encode()), *provenance]))
            return outcome
        for index, raw in enumerate(raws):
            pos = position(offset, index)
            try:
                event = self.parse(raw, now_ms)
                if not routed and (home := self.home(raw)) != partition:
                    outcome.forwards.append((home, raw))
                    continue
                state.apply(event, pos, now_ms)
            except InvalidEvent as invalid:
                state.reject(pos)
                reason = [("reason", str(invalid).encode()), ("field", invalid.field.encode())]
                outcome.dead_letters.append((_dumps(raw), [*reason, *provenance]))
                continue
            except Exception as error:  # a poison event must not stop the stream
                log.exception("event %s of record %s/%s failed; dead-lettered", index, partition, offset)
                state.reject(pos)
                reason = [("reason", f"handler exception: {type(error).__name__}: {error}"[:500].encode())]
                outcome.dead_letters.append((_dumps(raw), [*reason, *provenance]))
                continue
            self.last_applied_ms = now_ms
        return outcome


# The text of a dead letter that is not JSON-encodable: bounded in depth and length (the
# record's own bytes stay on its topic, at the offset its provenance headers name).
_DEAD_LETTER_REPR = reprlib.Repr()
_DEAD_LETTER_REPR.maxlevel, _DEAD_LETTER_REPR.maxstring = 8, 200


def _dumps(raw: Any) -> bytes:
    """A dead letter's value: the event as JSON, or a bounded text of it when it cannot be
    encoded (too deep for the encoder, or not JSON at all); never raises."""
    try:
        return orjson.dumps(raw)
    except (TypeError, RecursionError):
        return _DEAD_LETTER_REPR.repr(raw).encode()


def canonical_applier(keeper: StateKeeper, partitions: int, topic: str) -> RecordApplier:
    """The applier of the canonical events topic."""
    currencies = keeper.config.known_currencies
    tenants = keeper.config.known_tenants

    def parse(raw: Any, now_ms: int) -> Event:
        return parse_event(raw, now_ms=now_ms, known_currencies=currencies, known_tenants=tenants)

    return RecordApplier(keeper, parse, lambda raw: partition_for(routing_key(raw), partitions), topic,
                         partitions)


def customer_applier(keeper: StateKeeper, partitions: int, topic: str) -> RecordApplier:
    """The applier of the internal customer topic."""

    def parse(raw: Any, now_ms: int) -> Event:
        try:
            return decode_internal(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidEvent("internal", f"not an internal event: {exc}") from None

    def home(raw: Any) -> int:
        return partition_for(str(raw[3]["customer_id"]).encode(), partitions)

    return RecordApplier(keeper, parse, home, topic, partitions)
