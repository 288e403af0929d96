"""HubSpot and Stripe exports imported into a real broker give a worker the hand-computed KPIs;
importing a file again, or resuming a finished import, changes nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crmkpi.embedded import EmbeddedProcess
from kpis.timebase import HOUR_MS
from streams.events import format_time_ms
from tests.support.engine import EngineEnv, WorkerProcess, wait_for
from tests.support.kafka import KafkaBroker

pytestmark = pytest.mark.integration

DAY = 24 * HOUR_MS
NEW_YORK = ZoneInfo("America/New_York")


def us(time_ms: int) -> str:
    """A HubSpot-style local time in New York, US order, to the minute."""
    return datetime.fromtimestamp(time_ms / 1000, NEW_YORK).strftime("%m/%d/%Y %I:%M %p")


def utc(time_ms: int) -> str:
    """A Stripe-style naive UTC time."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def deals_csv(at: int) -> str:
    return "\n".join([
        "Record ID,Deal Name,Deal Stage,Amount,Create Date,Close Date",
        f'1,Acme,Closed Won,"$1,000.50",{us(at - 3 * DAY)},{us(at - 2 * HOUR_MS)}',
        f"2,Globex,Closed Lost,500,{us(at - 5 * DAY)},{us(at - HOUR_MS)}",
        f'3,Initech,Closed Won,"EUR 200.00",{us(at - 10 * DAY)},{us(at - 3 * DAY)}',
        f"4,Hooli,Qualified To Buy,900,{us(at - DAY)},{us(at + 20 * DAY)}",
        f"5,Umbrella,Closed Won,900,{us(at - DAY)},",
    ]) + "\n"


def subscriptions_csv(at: int) -> str:
    return "\n".join([
        "id,Customer ID,Plan,Quantity,Currency,Interval,Amount,Status,Created (UTC),"
        "Current Period Start (UTC),Canceled At (UTC),Ended At (UTC)",
        f"sub_a,cus_a,Pro,1,usd,month,50.00,active,{utc(at - 40 * DAY)},{utc(at - 10 * DAY)},,",
        f'sub_b,cus_b,Enterprise,1,usd,year,"1,200.00",active,{utc(at - 20 * DAY)},{utc(at - 20 * DAY)},,',
        f"sub_c,cus_c,Starter,1,usd,month,30.00,canceled,{utc(at - 60 * DAY)},{utc(at - 35 * DAY)},"
        f"{utc(at - 5 * DAY)},{utc(at - 5 * DAY)}",
    ]) + "\n"


# By hand: deal 1 won 1,000.50 2 h before T after a (3 d - 2 h) cycle, deal 3 won 200 EUR = 220
# 3 days before T after 7 days, deal 2 lost an hour before T, deal 4 open, deal 5 bad (no close
# date). MRR at T: 50 + 1,200 / 12; sub_c, active at T-30d, churned 5 days before T (its last
# renewal, 35 days before T, is outside 30d); sub_a renewed 10 days before T; cus_b is the only
# customer acquired in the last 30 days.
EXPECTED = {
    "24h": {"deals_won": 1, "deals_lost": 1, "win_rate": 0.5, "won_revenue": 1000.5,
            "sales_cycle_seconds_avg": 252_000.0},
    "7d": {"deals_won": 2, "deals_lost": 1, "win_rate": 2 / 3, "won_revenue": 1220.5,
           "avg_deal_size": 610.25, "sales_cycle_seconds_avg": 428_400.0},
    "30d": {"mrr": 150.0, "active_customers": 2, "churn_rate": 0.5, "renewal_rate": 0.5,
            "new_customers": 1},
}


def test_imported_exports_give_the_hand_computed_kpis(kafka_broker: KafkaBroker,
                                                      redis_server: EmbeddedProcess,
                                                      tmp_path: Path, unique_name: str) -> None:
    env = EngineEnv(kafka_broker.bootstrap, redis_server.address, tmp_path / "home", unique_name,
                    extra={"CRMKPI_FX_RATES": "EUR=1.1"})
    at_ms = time.time_ns() // 1_000_000 // HOUR_MS * HOUR_MS
    deals, subscriptions = tmp_path / "deals.csv", tmp_path / "subscriptions.csv"
    deals.write_text(deals_csv(at_ms))
    subscriptions.write_text(subscriptions_csv(at_ms))

    imported = env.run("import", "--format", "hubspot-deals", str(deals), "--timezone", "America/New_York")
    assert imported.returncode == 1, imported.stderr.decode()
    assert f"{deals}:6: Close Date: is required for a closed won deal".encode() in imported.stderr
    again = env.run("import", "--format", "hubspot-deals", str(deals), "--timezone", "America/New_York")
    assert again.returncode == 1, again.stderr.decode()
    subs = env.run("import", "--format", "stripe-subscriptions", str(subscriptions))
    assert subs.returncode == 0, subs.stderr.decode()
    resumed = env.run("import", "--format", "stripe-subscriptions", str(subscriptions), "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert b"nothing left to publish" in resumed.stderr  # the checkpoint says all 6 are done

    worker = WorkerProcess(env, tmp_path).start()
    try:
        # 7 deal events (published twice, counted once) and 6 subscription events
        status = wait_for(worker, "/api/status", lambda s: s["events_processed"] >= 13 and s["lag"] == 0)
        assert (status["events_processed"], status["events_rejected"]) == (13, 0)
        at = format_time_ms(at_ms)
        for window, expected in EXPECTED.items():
            _, body = worker.get(f"/api/kpis?window={window}&at={at}")
            assert {kpi: body["kpis"][kpi] for kpi in expected} == expected, window
    finally:
        worker.stop()
