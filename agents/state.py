"""The bridge between the Faust state table and the per-partition KPI state.

The table holds one changelog record per state record of `kpis.partition`, keyed
`<partition>|<record key>`. The worker keeps decoded `PartitionState`s for the partitions it
owns, loads one from the recovered table the first time it is needed, writes what changed
after each batch (returning the changelog records for the worker to send and await), and
decodes them again after every rebalance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kpis.buckets import SumKey, merge_into
from kpis.config import KpiConfig
from kpis.entities import Family
from kpis.partition import PartitionState

# A changelog record: (partition, table key, value, or None for a deletion).
ChangelogRecord = tuple[int, bytes, bytes | None]


class StateKeeper:
    """Owns the `PartitionState` of every partition this worker processes."""

    def __init__(self, table: Any, families: tuple[Family, ...], config: KpiConfig) -> None:
        self.table = table
        self.families = families
        self.config = config
        self.states: dict[int, PartitionState] = {}

    def state(self, partition: int) -> PartitionState:
        """The state of `partition`, loaded from the recovered table on first use."""
        state = self.states.get(partition)
        if state is None:
            state = self.states[partition] = PartitionState(partition, self.families, self.config)
            prefix = f"{partition}|".encode()
            for key, value in list(self.table.data.items()):
                if key.startswith(prefix):
                    state.restore(key[len(prefix):].decode(), value)
        return state

    def write_changes(self, partitions: Iterable[int]) -> list[ChangelogRecord]:
        """Write every changed record of `partitions` to the table; return them for the changelog."""
        records: list[ChangelogRecord] = []
        for partition in partitions:
            state = self.states.get(partition)
            if state is None:
                continue
            for key, value in state.drain():
                full_key = f"{partition}|{key}".encode()
                if value is None:
                    self.table.data.pop(full_key, None)
                else:
                    # orjson returns small outputs in a ~4 KiB buffer; the table keeps its
                    # values for good, so keep an exact-size copy (about 3x less memory per entity).
                    value = self.table.data[full_key] = bytes(memoryview(value))
                records.append((partition, full_key, value))
        return records

    def prune(self, now_ms: int, partitions: Iterable[int]) -> None:
        """Drop what every window has left behind in `partitions` (write it after)."""
        for partition in partitions:
            self.state(partition).prune(now_ms)

    def reassign(self, kept: set[int]) -> None:
        """After a rebalance: drop the rows of partitions assigned elsewhere (their new owner
        rebuilds them from the changelog) and every decoded state, kept partitions included.

        A kept partition is decoded again on first use, from its table rows as the recovery
        left them: if this worker lost its group membership for a while (a long pause), the
        partition may have had another owner whose changelog writes only the table has.
        """
        self.states.clear()
        for key in [k for k in self.table.data if int(k.split(b"|", 1)[0]) not in kept]:
            del self.table.data[key]

    def window_totals(
        self, partitions: Iterable[int], window: str, at_ms: int, now_ms: int
    ) -> dict[SumKey, int]:
        """Merged window sums over `partitions`."""
        total: dict[SumKey, int] = {}
        for partition in partitions:
            merge_into(total, self.state(partition).window_totals(window, at_ms, now_ms))
        return total
