"""The record applier: misrouted events are forwarded unless the engine's producers routed them."""

from __future__ import annotations

import orjson
import pytest

from agents.ingest import RecordApplier, canonical_applier
from agents.state import StateKeeper
from kpis.config import KpiConfig
from kpis.families import families_of
from streams.events import parse_time_ms
from streams.topics import partition_for, routed_for, routing_key
from tests.support.pure_engine import ChangelogTable

PARTITIONS = 4
NOW_MS = parse_time_ms("2026-11-21T00:00:00Z")
LEADS = [{"id": f"e{n}", "source": "test", "occurred_at": "2026-11-20T10:00:00Z",
          "type": "lead.created", "data": {"lead_id": f"lead-{n}"}} for n in range(40)]


@pytest.fixture
def applier() -> RecordApplier:
    keeper = StateKeeper(ChangelogTable(), families_of("events"),
                         KpiConfig())
    return canonical_applier(keeper, PARTITIONS, "crm-kpi.events")


@pytest.mark.parametrize("headers", [None, (), (routed_for(PARTITIONS + 1),)],
                         ids=["no headers", "empty", "routed for another count"])
def test_events_off_their_partition_are_forwarded_home(
    applier: RecordApplier, headers: tuple[tuple[str, bytes], ...] | None
) -> None:
    outcome = applier.apply(0, 7, orjson.dumps(LEADS), NOW_MS, headers)
    assert outcome.dead_letters == []
    homes = {raw["id"]: partition_for(routing_key(raw), PARTITIONS) for raw in LEADS}
    assert outcome.forwards == [(homes[raw["id"]], raw) for raw in LEADS if homes[raw["id"]] != 0]
    assert applier.keeper.state(0).counters.processed == sum(home == 0 for home in homes.values())


def test_records_routed_for_this_partition_count_are_applied_where_they_are(
    applier: RecordApplier,
) -> None:
    outcome = applier.apply(0, 7, orjson.dumps(LEADS), NOW_MS, (routed_for(PARTITIONS),))
    assert outcome.dead_letters == []
    assert outcome.forwards == []
    assert applier.keeper.state(0).counters.processed == len(LEADS)


def test_an_event_too_deep_to_encode_again_is_a_bounded_dead_letter(applier: RecordApplier) -> None:
    # Decodable (orjson reads up to 1,024 levels) but not encodable (it writes up to 255).
    deep = "[" * 600 + "]" * 600
    value = f'[{deep}, {orjson.dumps(LEADS[0]).decode()}]'.encode()

    outcome = applier.apply(0, 7, value, NOW_MS, (routed_for(PARTITIONS),))

    [(dead_letter, headers)] = outcome.dead_letters
    assert dead_letter.startswith(b"[[[[") and len(dead_letter) < 100
    assert dict(headers)["reason"] == b"event: must be a JSON object"
    assert (dict(headers)["topic"], dict(headers)["offset"]) == (b"crm-kpi.events", b"7")
    assert applier.keeper.state(0).counters.processed == 1  # the good event after it
