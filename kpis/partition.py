"""The KPI state of one input partition: entities, time buckets, seen ids and counters.

Exactly-once effect under at-least-once delivery: every state record remembers the stream
position (`pos`) of the last event applied to it, and records are written to the changelog
in a fixed order (counters, buckets, seen ids, entities) within one changelog partition. After
a crash, a record read back is at or ahead of everything written before it, so an event
redelivered at a position at or below a record's `floor` (its position when read back) is
already in that record and is skipped there, and applied everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kpis.buckets import Bucket, BucketStore, SumKey, merge_into
from kpis.config import KpiConfig
from kpis.entities import Entity, Family, InternalEvent, contribution_delta
from kpis.timebase import DAY_MS, FINE_WINDOWS, HOUR_RETENTION_MS, window_lower_ms
from streams.events import Event

LATE_DEDUP_MS = 8 * DAY_MS
POSITION_SHIFT = 20  # position = offset << 20 | index of the event inside its record
WINDOW_MARK = "~"
SEEN_SEGMENT = 256  # ids per changelog record of a day's seen ids


def window_field(name: str, window: str) -> str:
    """The instance of field `name` that only `window` reads, reported there as `name`.

    For quantities whose definition depends on the window (customers active at T-W that
    churned by T): a KPI formula does not know its window, so each window gets its own field.
    """
    return f"{name}{WINDOW_MARK}{window}"


def position(offset: int, index: int) -> int:
    """The stream position of the `index`-th event of the record at `offset`."""
    return (offset << POSITION_SHIFT) | index


@dataclass(slots=True)
class EntityRecord:
    """An entity with its stream positions."""

    entity: Entity
    pos: int = -1
    floor: int = -1


@dataclass(slots=True)
class SeenIds:
    """Ids of entity-less events of one day, for dedup (see `PartitionState.seen`).

    The changelog holds them in segments of at most SEEN_SEGMENT ids (`s|<group>|<n>`): a
    flush rewrites only the open (last) segment, never the whole day, so the bytes written
    per batch stay bounded however many ids the day has.
    """

    ids: set[str]
    pos: int = -1
    floor: int = -1
    open_ids: list[str] = field(default_factory=list)  # ids of the open segment, in order
    segment: int = 0  # number of the open segment
    segments_written: int = 0  # segment records that exist (for the tombstones at prune)
    legacy: bool = False  # an unsegmented `s|<group>` record exists (written before segments)
    dirty: bool = False
    sealed: list[tuple[int, list[str]]] = field(default_factory=list)  # full, not yet written

    def add(self, uid: str) -> None:
        if len(self.open_ids) >= SEEN_SEGMENT:
            if self.dirty:
                self.sealed.append((self.segment, self.open_ids))
            self.segment += 1
            self.open_ids = []
        self.ids.add(uid)
        self.open_ids.append(uid)
        self.dirty = True


@dataclass(slots=True)
class Counters:
    """Per-partition event counters for `/api/status`."""

    processed: int = 0
    rejected: int = 0
    pos: int = -1
    floor: int = -1


class PartitionState:
    """Applies canonical events of one partition to KPI state and yields changelog records."""

    def __init__(self, partition: int, families: tuple[Family, ...], config: KpiConfig) -> None:
        self.partition = partition
        self.config = config
        self.entity_types: dict[str, type[Entity]] = {}
        self.stateless: dict[str, Any] = {}
        cumulative: set[str] = set()
        for family in families:
            self.entity_types.update(family.entities)
            self.stateless.update(family.stateless)
            cumulative |= family.cumulative_fields
        self.kinds = {cls.kind: cls for cls in self.entity_types.values()}
        self.emitting = frozenset(cls for cls in self.entity_types.values() if cls.emitting())
        self.buckets = BucketStore(frozenset(cumulative))
        self.entities: dict[str, EntityRecord] = {}
        # Entity-less events are deduplicated by id, grouped by day: by event-time day ("e")
        # while the event is inside the bucket retention, else by arrival day ("a"), kept for
        # LATE_DEDUP_MS, which outlasts every provider's retries of an old event.
        self.seen: dict[tuple[str, int], SeenIds] = {}
        self.dropped_seen: dict[tuple[str, int], SeenIds] = {}
        self.counters = Counters()
        self.outbox: list[tuple[str, InternalEvent]] = []
        self.dirty_entities: set[str] = set()
        self.dirty_seen: set[tuple[str, int]] = set()
        self.counters_dirty = False

    # -- applying events -------------------------------------------------------------------

    def apply(self, event: Event, pos: int, now_ms: int) -> None:
        """Apply one valid event at stream position `pos` (to its entity when it names one)."""
        entity_type = self.entity_types.get(event.type)
        if entity_type is not None and event.data.get(entity_type.key_field) is not None:
            new = self._apply_entity(entity_type, event, pos, now_ms)
        else:
            new = self._apply_stateless(event, pos, now_ms)
        if new:
            self._count(pos, processed=1)

    def reject(self, pos: int) -> None:
        """Count an invalid event (it went to the dead-letter topic)."""
        self._count(pos, rejected=1)

    def _count(self, pos: int, processed: int = 0, rejected: int = 0) -> None:
        if pos <= self.counters.floor:
            return
        self.counters.processed += processed
        self.counters.rejected += rejected
        self.counters.pos = max(self.counters.pos, pos)
        self.counters_dirty = True

    def _apply_entity(self, entity_type: type[Entity], event: Event, pos: int, now_ms: int) -> bool:
        key = f"{entity_type.kind}|{event.tenant}|{event.data[entity_type.key_field]}"
        record = self.entities.get(key)
        if record is None:
            record = self.entities[key] = EntityRecord(entity_type())
        if pos <= record.floor:
            return False
        entity, tenant = record.entity, event.tenant
        emitting = entity_type in self.emitting
        entity_id = str(event.data[entity_type.key_field])
        before = entity.contributions(tenant)
        sent_before = entity.emits(tenant, entity_id) if emitting else None
        if not entity.apply(event, self.config):
            entity.release()
            return False
        for contribution in contribution_delta(before, entity.contributions(tenant)):
            self.buckets.add(contribution, pos, now_ms)
        if emitting:
            sent_after = entity.emits(tenant, entity_id)
            if sent_after != sent_before:
                self.outbox.extend((tenant, internal) for internal in sent_after)
        entity.release()
        record.pos = pos
        self.dirty_entities.add(key)
        return True

    def _apply_stateless(self, event: Event, pos: int, now_ms: int) -> bool:
        event_day = ("e", event.time_ms // DAY_MS)
        # Older than every window: filed by arrival day, counted, changes no sum.
        fresh = event.time_ms >= now_ms - HOUR_RETENTION_MS
        group = event_day if fresh else ("a", now_ms // DAY_MS)
        seen = self.seen.get(group)
        if seen is None:
            seen = self.seen[group] = SeenIds(set())
        uid = event.uid
        if pos <= seen.floor or self._seen_before(uid, event_day, now_ms):
            return False
        seen.add(uid)
        seen.pos = pos
        self.dirty_seen.add(group)
        rule = self.stateless.get(event.type)
        for contribution in rule(event, self.config) if rule else ():
            self.buckets.add(contribution, pos, now_ms)
        return True

    def _seen_before(self, uid: str, event_day: tuple[str, int], now_ms: int) -> bool:
        """Whether `uid` is filed under any group it may have been given: its event-time day,
        or an arrival day still kept. An event passes from the first to the second as it ages
        past the bucket retention, and from one arrival day to the next at midnight, so its
        duplicate can arrive when it would be filed elsewhere."""
        seen = self.seen.get(event_day)
        if seen is not None and uid in seen.ids:
            return True
        today = now_ms // DAY_MS
        # One day ahead too: the partition's previous owner may have had a clock a little ahead.
        for day in range(today - LATE_DEDUP_MS // DAY_MS, today + 2):
            seen = self.seen.get(("a", day))
            if seen is not None and uid in seen.ids:
                return True
        return False

    def take_outbox(self) -> list[tuple[str, InternalEvent]]:
        """(tenant, internal event) produced since the last call, to send before the flush."""
        outbox, self.outbox = self.outbox, []
        return outbox

    # -- reading ---------------------------------------------------------------------------

    def window_totals(self, window: str, at_ms: int, now_ms: int) -> dict[SumKey, int]:
        """Sums of `window` at `at_ms`, plus cumulative fields at `at` and at the window start.

        Cumulative fields appear as `field@at` and `field@start`, so that point-in-time KPIs
        and their value at `T - W` merge across partitions by plain addition. Window fields
        (`window_field`) of this window appear under their bare name, others not at all.
        """
        lower = window_lower_ms(window, at_ms, self.config.zone)
        totals = self.buckets.window_sums(lower, at_ms, now_ms, window in FINE_WINDOWS)
        if self.buckets.cumulative_fields:
            for suffix, moment in (("@at", at_ms), ("@start", lower)):
                for (tenant, name, dim, seg), value in self.buckets.cumulative_sums(moment, now_ms).items():
                    key = (tenant, name + suffix, dim, seg)
                    totals[key] = totals.get(key, 0) + value
        return _own_window_fields(totals, window, self.buckets.cumulative_fields)

    # -- changelog -------------------------------------------------------------------------

    def prune(self, now_ms: int) -> None:
        """Drop buckets and seen ids that every window has left behind."""
        self.buckets.prune(now_ms)
        oldest = {"e": (now_ms - HOUR_RETENTION_MS) // DAY_MS, "a": (now_ms - LATE_DEDUP_MS) // DAY_MS}
        for group in [g for g in self.seen if g[1] < oldest[g[0]]]:
            self.dropped_seen[group] = self.seen.pop(group)
            self.dirty_seen.add(group)

    def drain(self) -> Iterator[tuple[str, bytes | None]]:
        """Changelog records of everything changed since the last drain, in the safe order.

        A value of None deletes the key (a dropped bucket or seen-id day).
        """
        if self.counters_dirty:
            counters = self.counters
            yield "meta", orjson.dumps([counters.pos, counters.processed, counters.rejected])
            self.counters_dirty = False
        bucket_keys = sorted(self.buckets.dirty, key=lambda kind_index: kind_index[0] != "b")
        self.buckets.dirty.clear()
        for kind, index in bucket_keys:
            bucket = self.buckets.bucket(kind, index)
            yield f"{kind}|{index}", None if bucket is None else _encode_bucket(bucket)
        for group in sorted(self.dirty_seen):
            yield from self._drain_seen(group)
        self.dirty_seen.clear()
        for key in sorted(self.dirty_entities):
            record = self.entities[key]
            yield f"e|{key}", orjson.dumps([record.pos, record.entity.to_state()])
        self.dirty_entities.clear()

    def _drain_seen(self, group: tuple[str, int]) -> Iterator[tuple[str, bytes | None]]:
        name = f"s|{group[0]}{group[1]}"
        seen = self.seen.get(group)
        if seen is None:  # dropped by prune: tombstones for every record it had
            dropped = self.dropped_seen.pop(group, None)
            if dropped is not None:
                if dropped.legacy:
                    yield name, None
                for segment in range(dropped.segments_written):
                    yield f"{name}|{segment}", None
            return
        for segment, ids in seen.sealed:
            yield f"{name}|{segment}", orjson.dumps([seen.pos, ids])
        seen.sealed.clear()
        if seen.dirty:
            yield f"{name}|{seen.segment}", orjson.dumps([seen.pos, seen.open_ids])
            seen.segments_written = max(seen.segments_written, seen.segment + 1)
            seen.dirty = False

    def restore(self, key: str, value: bytes) -> None:
        """Load one changelog record written by `drain` (after a restart or a rebalance)."""
        kind, _, rest = key.partition("|")
        decoded = orjson.loads(value)
        if kind == "meta":
            pos, processed, rejected = decoded
            self.counters = Counters(processed, rejected, pos, pos)
        elif kind in ("m", "h", "b"):
            self.buckets.restore(kind, int(rest), _decode_bucket(decoded))
        elif kind == "s":
            pos, ids = decoded
            name, _, segment = rest.partition("|")
            group = (name[0], int(name[1:]))
            seen = self.seen.get(group)
            if seen is None:
                seen = self.seen[group] = SeenIds(set())
            seen.ids.update(ids)
            seen.pos = seen.floor = max(seen.pos, pos)
            if not segment:
                seen.legacy = True
            elif int(segment) >= seen.segments_written:
                seen.segments_written = int(segment) + 1
                seen.segment = int(segment)
                seen.open_ids = list(ids)
        elif kind == "e":
            pos, state = decoded
            entity = self.kinds[rest.partition("|")[0]].from_state(state)
            self.entities[rest] = EntityRecord(entity, pos, pos)
        else:
            raise ValueError(f"unknown state record {key!r}")


def _own_window_fields(
    totals: dict[SumKey, int], window: str, cumulative: frozenset[str]
) -> dict[SumKey, int]:
    """`totals` with `name~window` renamed `name` (a cumulative one: its value at T, from
    `name~window@at`) and every other window's fields dropped."""
    own: dict[SumKey, int] = {}
    for (tenant, name, dim, seg), value in totals.items():
        bare, mark, scope = name.partition(WINDOW_MARK)
        if mark:
            wanted = f"{window}@at" if window_field(bare, window) in cumulative else window
            if scope != wanted:
                continue
            name = bare
        key = (tenant, name, dim, seg)
        own[key] = own.get(key, 0) + value
    return own


def _encode_bucket(bucket: Bucket) -> bytes:
    values = [[*key, value] for key, value in bucket.values.items() if value]
    return orjson.dumps([bucket.pos, bucket.folded_through, values])


def _decode_bucket(decoded: list[Any]) -> Bucket:
    pos, folded_through, values = decoded
    bucket = Bucket(pos=pos, folded_through=folded_through)
    merge_into(bucket.values, {(t, f, d, s): v for t, f, d, s, v in values})
    return bucket
