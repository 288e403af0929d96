"""The worker's record path without Faust or Kafka, for fast exactness and crash tests.

Records are routed and batched as crm-kpi's producers do, kept in per-partition logs with
offsets, and applied by the worker's own `RecordApplier` and `StateKeeper`. The state table
is a dict plus a per-partition changelog list, so a crash can be simulated by rebuilding the
state from a prefix of the changelog and redelivering records from an earlier offset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from agents.ingest import canonical_applier, customer_applier
from agents.state import ChangelogRecord, StateKeeper
from kpis.buckets import SumKey, merge_into
from kpis.catalogue import KpiValues, evaluate
from kpis.config import KpiConfig
from kpis.families import families_of
from streams.codec import encode_batches
from streams.internal import encode_internal
from streams.topics import partition_for, routing_key


class ChangelogTable:
    """Stands in for a Faust table: `data`, and every changelog record sent, per partition."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)

    def send(self, records: Iterable[ChangelogRecord]) -> None:
        """Record changelog writes, as the worker sends them."""
        for partition, key, value in records:
            self.changelog[partition].append((key, value))

    def recovered(self, keep: Mapping[int, int] | None = None) -> ChangelogTable:
        """A table rebuilt from the changelog, keeping only the first `keep[p]` records of p."""
        table = ChangelogTable()
        for partition, records in self.changelog.items():
            kept = records if keep is None else records[: keep.get(partition, len(records))]
            table.changelog[partition] = list(kept)
            for key, value in kept:
                if value is None:
                    table.data.pop(key, None)
                else:
                    table.data[key] = value
        return table


class Stage:
    """One input topic's logs, state and consumer positions."""

    def __init__(self, kind: str, config: KpiConfig, partitions: int, table: ChangelogTable) -> None:
        self.kind = kind
        self.log: dict[int, list[bytes]] = defaultdict(list)
        self.position: dict[int, int] = defaultdict(int)
        self.table = table
        families = families_of(kind)
        self.keeper = StateKeeper(table, families, config)
        make = canonical_applier if kind == "events" else customer_applier
        self.applier = make(self.keeper, partitions, f"crm-kpi.{kind}")

    def write(self, partitions: Iterable[int]) -> None:
        """Write the changed state of `partitions` to the table and its changelog."""
        self.table.send(self.keeper.write_changes(partitions))


class PureEngine:
    """Feeds canonical events through the worker's record path, partition by partition."""

    def __init__(self, config: KpiConfig, partitions: int = 4) -> None:
        self.config = config
        self.partitions = partitions
        self.events = Stage("events", config, partitions, ChangelogTable())
        self.customers = Stage("customers", config, partitions, ChangelogTable())

    def publish(self, raws: Iterable[Mapping[str, Any]], per_record: int = 50) -> None:
        """Append events to the events log as crm-kpi's publisher does (batched per partition)."""
        pending: dict[int, list[bytes]] = defaultdict(list)
        for raw in raws:
            partition = partition_for(routing_key(raw), self.partitions)
            pending[partition].append(orjson.dumps(raw))
            if len(pending[partition]) == per_record:
                self.events.log[partition].extend(encode_batches(pending.pop(partition)))
        for partition, encoded in pending.items():
            self.events.log[partition].extend(encode_batches(encoded))

    def run(self, now_ms: int) -> None:
        """Consume every record not yet consumed, in both stages, until nothing is left."""
        while self._consume(self.events, now_ms) + self._consume(self.customers, now_ms):
            pass

    def _consume(self, stage: Stage, now_ms: int) -> int:
        consumed = 0
        for partition, records in stage.log.items():
            while stage.position[partition] < len(records):
                offset = stage.position[partition]
                outcome = stage.applier.apply(partition, offset, records[offset], now_ms)
                assert not outcome.dead_letters, outcome.dead_letters
                for home, raw in outcome.forwards:
                    stage.log[home].append(orjson.dumps(raw))
                self._send_internal(stage.keeper.state(partition).take_outbox())
                stage.write([partition])
                stage.position[partition] = offset + 1
                consumed += 1
        return consumed

    def _send_internal(self, outbox: list[tuple[str, tuple[str, str, int, dict[str, Any]]]]) -> None:
        for tenant, (key, event_type, time_ms, data) in outbox:
            partition = partition_for(key.encode(), self.partitions)
            value = encode_internal(tenant, event_type, time_ms, data)
            self.customers.log[partition].extend(encode_batches([value]))

    def crash(self, keep_changelog: Mapping[int, int], rewind_to: Mapping[int, int]) -> None:
        """Lose the events stage's memory: state from a changelog prefix, positions rewound."""
        table = self.events.table.recovered(keep_changelog)
        stage = Stage("events", self.config, self.partitions, table)
        stage.log = self.events.log
        stage.position.update(rewind_to)
        self.events = stage

    def totals(self, window: str, at_ms: int, now_ms: int) -> dict[SumKey, int]:
        """Window sums over every partition of both stages."""
        totals: dict[SumKey, int] = {}
        for stage in (self.events, self.customers):
            merge_into(totals, stage.keeper.window_totals(range(self.partitions), window, at_ms, now_ms))
        return totals

    def kpis(self, window: str, at_ms: int, now_ms: int, *, by: str | None = None,
             tenant: str = "default") -> KpiValues:
        """Every KPI as the API computes it."""
        return evaluate(self.totals(window, at_ms, now_ms), tenant=tenant, by=by,
                        gross_margin=self.config.gross_margin,
                        sums_30d=self.totals("30d", at_ms, now_ms))
