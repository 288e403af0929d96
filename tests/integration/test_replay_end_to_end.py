"""A replayed file of lead and deal events gives the hand-computed KPIs, on both brokers."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from crmkpi.embedded import EmbeddedProcess
from kpis.timebase import HOUR_MS
from streams.events import format_time_ms
from tests.support.engine import EngineEnv, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

MINUTE = 60_000
DAY = 24 * HOUR_MS


def lead_and_deal_events(at_ms: int) -> list[dict]:
    """Eleven events (one a duplicate, one invalid) at known distances before T."""
    def event(n: int, kind: str, before_ms: int, **data: object) -> dict:
        return {"id": f"e{n}", "source": "test", "type": kind,
                "occurred_at": format_time_ms(at_ms - before_ms), "data": data}

    return [
        event(1, "lead.created", 10 * MINUTE, lead_id="L1", channel="web"),
        event(2, "lead.created", 3 * HOUR_MS, lead_id="L2", channel="ads"),
        event(3, "lead.created", 3 * DAY, lead_id="L3"),
        event(4, "deal.won", 20 * MINUTE, deal_id="D1", amount=1000.5, channel="web"),
        event(5, "deal.created", 2 * DAY, deal_id="D1", amount=900),
        event(6, "deal.lost", 2 * HOUR_MS, deal_id="D2", channel="ads"),
        event(7, "deal.won", 10 * DAY, deal_id="D3", amount=200, currency="EUR"),
        event(8, "deal.lost", 40 * DAY, deal_id="D4"),
        event(4, "deal.won", 20 * MINUTE, deal_id="D1", amount=1000.5, channel="web"),
        event(9, "deal.won", 5 * MINUTE, deal_id="D5"),
        {"id": "bad", "source": "test", "type": "deal.won", "occurred_at": "yesterday", "data": {}},
    ]


# Worked by hand from the events above (EUR=1.1): D1 won 1000.5 after a 2-day cycle, D3 won
# 200 EUR = 220, D5 won without an amount, D2 lost 2 h ago, D4 lost 40 days ago.
EXPECTED = {
    "1h": {"leads_created": 1, "deals_won": 2, "deals_lost": 0, "win_rate": 1.0,
           "won_revenue": 1000.5, "avg_deal_size": 1000.5},
    "24h": {"leads_created": 2, "deals_won": 2, "deals_lost": 1, "win_rate": 2 / 3,
            "won_revenue": 1000.5, "avg_deal_size": 1000.5},
    "7d": {"leads_created": 3, "deals_won": 2, "deals_lost": 1, "win_rate": 2 / 3,
           "won_revenue": 1000.5, "avg_deal_size": 1000.5},
    "30d": {"leads_created": 3, "deals_won": 3, "deals_lost": 1, "win_rate": 0.75,
            "won_revenue": 1220.5, "avg_deal_size": 610.25},
}


@pytest.fixture
def redis_url(redis_server: EmbeddedProcess) -> str:
    return redis_server.address


def test_replay_gives_the_hand_computed_kpis(broker: str, redis_url: str, tmp_path: Path,
                                             unique_name: str, request: pytest.FixtureRequest) -> None:
    on_tansu = "tansu" in request.node.callspec.id
    env = EngineEnv(broker, redis_url, tmp_path, unique_name, idempotence=not on_tansu,
                    extra={"CRMKPI_FX_RATES": "EUR=1.1"})
    at_ms = time.time_ns() // 1_000_000 // HOUR_MS * HOUR_MS
    replay_file = tmp_path / "events.jsonl"
    replay_file.write_bytes(b"\n".join(orjson.dumps(e) for e in lead_and_deal_events(at_ms)))

    replay = env.run("replay", str(replay_file))
    assert replay.returncode == 1, replay.stderr.decode()
    assert b"events.jsonl:11: occurred_at" in replay.stderr

    worker = WorkerProcess(env, tmp_path).start()
    try:
        status = wait_for(worker, "/api/status", lambda s: s["events_processed"] == 9 and s["lag"] == 0)
        assert status == {"events_processed": 9, "events_rejected": 0, "lag": 0,
                          "partitions": [0, 1, 2, 3]}
        at = format_time_ms(at_ms)
        for window, expected in EXPECTED.items():
            _, body = worker.get(f"/api/kpis?window={window}&at={at}")
            got = {kpi: body["kpis"][kpi] for kpi in expected}
            assert got == expected, window
        _, sliced = worker.get(f"/api/kpis?window=24h&at={at}&by=channel")
        assert sliced["kpis"]["win_rate"] == {"ads": 0.0, "unknown": 1.0, "web": 1.0}
    finally:
        worker.stop()
