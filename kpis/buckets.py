"""Per-partition KPI sums in event-time buckets, at minute and hour resolution.

Every contribution is added to its hour bucket and, while recent, to its minute bucket. Each
bucket remembers the stream position of the last event applied to it, so that an event
redelivered after a crash is not applied to a bucket that already holds it. Buckets are
dropped by event time, never by arrival time; sums of cumulative fields (point-in-time
quantities) are folded into a base before their bucket is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from kpis.timebase import (
    HOUR_MS,
    HOUR_RETENTION_MS,
    MINUTE_MS,
    MINUTE_RETENTION_MS,
    bucket_range,
)

MINUTES_PER_HOUR = HOUR_MS // MINUTE_MS
HOURS_PER_DAY = 24

# (tenant, field, dimension, segment); the unsliced total has dimension and segment "".
SumKey = tuple[str, str, str, str]
Segments = tuple[tuple[str, str], ...]
# (event time ms, tenant, field, segments, value)
Contribution = tuple[int, str, str, Segments, int]

# Leading marker of a contribution that counts in its segment slices but not in the total:
# for distinct counts whose slice value is not the sum of entity facts (a customer with one
# `web` and one `ads` order is a repeat buyer in the total, but in neither slice).
SLICE_ONLY: tuple[str, str] = ("", "slice-only")


@dataclass(slots=True)
class Bucket:
    """Sums of one time bucket, with the stream positions it has absorbed."""

    values: dict[SumKey, int] = field(default_factory=dict)
    pos: int = -1
    floor: int = -1
    # Only on the base: the newest hour index whose cumulative sums were folded into it.
    folded_through: int = -1

    def add(self, tenant: str, name: str, segments: Segments, value: int) -> None:
        """Add `value` to the total (unless SLICE_ONLY) and to each segment slice of `name`."""
        values = self.values
        if segments and segments[0] == SLICE_ONLY:
            segments = segments[1:]
        else:
            key: SumKey = (tenant, name, "", "")
            values[key] = values.get(key, 0) + value
        for dimension, label in segments:
            key = (tenant, name, dimension, label)
            values[key] = values.get(key, 0) + value


def merge_into(total: dict[SumKey, int], values: dict[SumKey, int]) -> None:
    """Add every sum of `values` into `total`."""
    for key, value in values.items():
        total[key] = total.get(key, 0) + value


class BucketStore:
    """The minute and hour buckets of one partition, plus the folded base of cumulative sums."""

    def __init__(self, cumulative_fields: frozenset[str]) -> None:
        self.minutes: dict[int, Bucket] = {}
        self.hours: dict[int, Bucket] = {}
        self.base = Bucket()
        self.cumulative_fields = cumulative_fields
        self.dirty: set[tuple[str, int]] = set()
        # Read-side cache of merged buckets: ("m", hour) the minutes of an hour, ("h", day) the
        # hours of a day, ("c", day) their cumulative fields only. Any change to a bucket drops
        # the rollups it is in, so a 30-day read merges ~30 rollups instead of ~720 buckets.
        self._rollups: dict[tuple[str, int], dict[SumKey, int]] = {}

    def _invalidate(self, kind: str, index: int) -> None:
        rollups = self._rollups
        if rollups:
            if kind == "m":
                rollups.pop(("m", index // MINUTES_PER_HOUR), None)
            elif kind == "h":
                rollups.pop(("h", index // HOURS_PER_DAY), None)
                rollups.pop(("c", index // HOURS_PER_DAY), None)

    def _rollup(self, kind: str, group: int) -> dict[SumKey, int]:
        cached = self._rollups.get((kind, group))
        if cached is None:
            cached = {}
            if kind == "m":
                for index in _present(self.minutes, range(group * MINUTES_PER_HOUR,
                                                          (group + 1) * MINUTES_PER_HOUR)):
                    merge_into(cached, self.minutes[index].values)
            else:
                cumulative = self.cumulative_fields
                for index in _present(self.hours, range(group * HOURS_PER_DAY, (group + 1) * HOURS_PER_DAY)):
                    values = self.hours[index].values
                    if kind == "c":
                        values = {k: v for k, v in values.items() if k[1] in cumulative}
                    merge_into(cached, values)
            self._rollups[(kind, group)] = cached
        return cached

    def _merge_range(self, total: dict[SumKey, int], kind: str, indexes: range) -> None:
        """Add the buckets of `indexes` (minutes or hours) into `total`, whole groups from
        the rollups. `kind` "c" merges hours, cumulative fields only."""
        buckets = self.minutes if kind == "m" else self.hours
        size = MINUTES_PER_HOUR if kind == "m" else HOURS_PER_DAY
        start, stop = indexes.start, indexes.stop
        first_full = -(-start // size)
        last_full = stop // size  # groups [first_full, last_full) lie wholly inside
        if last_full - first_full < 1 or not buckets:
            singles = [indexes]
        else:
            for group in range(first_full, last_full):
                merge_into(total, self._rollup(kind, group))
            singles = [range(start, first_full * size), range(last_full * size, stop)]
        cumulative = self.cumulative_fields
        for part in singles:
            for index in _present(buckets, part):
                values = buckets[index].values
                if kind == "c":
                    values = {k: v for k, v in values.items() if k[1] in cumulative}
                merge_into(total, values)

    def add(self, contribution: Contribution, pos: int, now_ms: int) -> None:
        """Apply one contribution of the event at stream position `pos`."""
        time_ms, tenant, name, segments, value = contribution
        if time_ms >= now_ms - MINUTE_RETENTION_MS:
            self._add_to("m", self.minutes, time_ms // MINUTE_MS, contribution, pos)
        if time_ms >= now_ms - HOUR_RETENTION_MS:
            self._add_to("h", self.hours, time_ms // HOUR_MS, contribution, pos)
        elif name in self.cumulative_fields and pos > self.base.floor:
            self.base.add(tenant, name, segments, value)
            self.base.pos = max(self.base.pos, pos)
            self.dirty.add(("b", 0))

    def _add_to(
        self, kind: str, buckets: dict[int, Bucket], index: int, c: Contribution, pos: int
    ) -> None:
        bucket = buckets.get(index)
        if bucket is None:
            bucket = buckets[index] = Bucket()
        if pos <= bucket.floor:
            return
        bucket.add(c[1], c[2], c[3], c[4])
        if pos > bucket.pos:
            bucket.pos = pos
        self.dirty.add((kind, index))
        self._invalidate(kind, index)

    def window_sums(self, lower_ms: int, at_ms: int, now_ms: int, fine: bool) -> dict[SumKey, int]:
        """Sums over `(lower, at]`, from minute buckets when `fine` and still kept, else hours."""
        use_minutes = fine and lower_ms >= now_ms - MINUTE_RETENTION_MS + MINUTE_MS
        kind, resolution = ("m", MINUTE_MS) if use_minutes else ("h", HOUR_MS)
        total: dict[SumKey, int] = {}
        self._merge_range(total, kind, bucket_range(lower_ms, at_ms, resolution))
        return total

    def cumulative_sums(self, at_ms: int, now_ms: int) -> dict[SumKey, int]:
        """Cumulative fields summed over all event time up to `at` (point-in-time values).

        Whole hours come from hour buckets; the part of `at`'s own hour from minute buckets
        while they are kept, so the error stays under a minute for recent `at`.
        """
        total = dict(self.base.values)
        hour_start = at_ms // HOUR_MS * HOUR_MS
        minutes_kept = hour_start >= now_ms - MINUTE_RETENTION_MS + HOUR_MS
        split = hour_start if minutes_kept and hour_start < at_ms else at_ms
        last = (split - 1) // HOUR_MS
        if self.hours:
            self._merge_range(total, "c", range(min(min(self.hours), last + 1), last + 1))
        if split < at_ms:
            cumulative = self.cumulative_fields
            for index in _present(self.minutes, range(split // MINUTE_MS, (at_ms - 1) // MINUTE_MS + 1)):
                merge_into(total, {k: v for k, v in self.minutes[index].values.items()
                                   if k[1] in cumulative})
        return total

    def prune(self, now_ms: int) -> None:
        """Drop buckets past retention, folding their cumulative sums into the base."""
        oldest_minute = (now_ms - MINUTE_RETENTION_MS) // MINUTE_MS
        for index in [i for i in self.minutes if i < oldest_minute]:
            del self.minutes[index]
            self.dirty.add(("m", index))
            self._invalidate("m", index)
        oldest_hour = (now_ms - HOUR_RETENTION_MS) // HOUR_MS
        for index in sorted(i for i in self.hours if i < oldest_hour):
            bucket = self.hours.pop(index)
            cumulative = {k: v for k, v in bucket.values.items() if k[1] in self.cumulative_fields}
            merge_into(self.base.values, cumulative)
            self.base.folded_through = index
            self.dirty.update({("b", 0), ("h", index)})
            self._invalidate("h", index)

    def bucket(self, kind: str, index: int) -> Bucket | None:
        """The bucket behind a dirty-set entry, or None once it was dropped."""
        if kind == "b":
            return self.base
        return (self.minutes if kind == "m" else self.hours).get(index)

    def restore(self, kind: str, index: int, bucket: Bucket) -> None:
        """Put back a bucket read from the changelog (its `pos` becomes its `floor`).

        The base is written before the tombstones of the buckets folded into it, so an hour
        bucket at or before `folded_through` is already in the base and is dropped here.
        """
        bucket.floor = bucket.pos
        self._rollups.clear()
        if kind == "b":
            self.base = bucket
            for folded in [i for i in self.hours if i <= bucket.folded_through]:
                del self.hours[folded]
        elif kind == "m":
            self.minutes[index] = bucket
        elif index > self.base.folded_through:
            self.hours[index] = bucket


def _present(buckets: dict[int, Bucket], indexes: range) -> Iterator[int]:
    if len(indexes) <= len(buckets):
        return (i for i in indexes if i in buckets)
    return (i for i in buckets if i in indexes)
