"""`crm-kpi import`: line-numbered reports, resumable publishing, and a round trip through exports
written (by this test) from generated canonical histories."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from crmkpi import replay
from crmkpi.cli import main
from crmkpi.importer import (
    Checkpoint,
    ExportError,
    MappedExport,
    file_sha256,
    map_export,
    publish_export,
    resume_point,
)
from streams.events import format_time_ms, parse_time_ms
from streams.exports import FORMATS
from tests.oracle.events import datetime_to_ms, first_copies
from tests.oracle.history import generate_history

FIXTURES = Path(__file__).parents[2] / "fixtures" / "exports"
NOW_MS = datetime_to_ms(datetime(2026, 11, 20, tzinfo=UTC))
CURRENCIES = frozenset({"USD", "EUR", "GBP"})
DEALS = FORMATS["hubspot-deals"]
QUIET = Console(quiet=True)


def write_csv(path: Path, header: list[str], rows: Iterable[Mapping[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def mapped_deals(path: Path) -> MappedExport:
    return map_export(path, DEALS, UTC, now_ms=NOW_MS, known_currencies=CURRENCIES)


# ---------------------------------------------------------------------------- reports


def test_bad_rows_are_reported_by_their_first_line(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text(
        "Record ID,Deal Name,Deal Stage,Amount,Currency,Create Date,Close Date\n"
        '1,"two\nlines",Closed Won,10,,2026-01-01 10:00,2026-01-02 10:00\n'  # lines 2-3
        "2,future,Closed Won,10,,2026-01-01 10:00,2027-01-01 10:00\n"  # line 4
        "\n"
        "3,yen,Appointment Scheduled,10,JPY,2026-01-01 10:00,\n"  # line 6
        ",no id,Closed Lost,,,2026-01-01 10:00,2026-01-03 10:00\n"  # line 7
        "5,ok,Closed Lost,,,2026-01-01 10:00,2026-01-03 10:00\n"  # line 8
        '"Confidential Information - Do Not Distribute"\n',
        encoding="utf-8",
    )
    mapped = mapped_deals(path)
    assert [(bad.line, bad.problem) for bad in mapped.bad] == [
        (4, "deal.won: occurred_at: is more than 5 minutes in the future"),
        (6, "deal.created: data.currency: unknown currency 'JPY': set CRMKPI_FX_RATES"),
        (7, "Record ID: is required"),
    ]
    assert (mapped.rows, mapped.lines, mapped.last_line) == (5, [2, 2, 8, 8], 9)
    assert [event["id"] for event in mapped.events] == [
        "import:hubspot-deals:1:deal.created", "import:hubspot-deals:1:deal.won",
        "import:hubspot-deals:5:deal.created", "import:hubspot-deals:5:deal.lost"]


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "contacts.csv", ["Record ID", "Create Date"], [])
    with pytest.raises(ExportError, match="not a hubspot-deals export: no column Deal Stage"):
        mapped_deals(path)


def test_dry_run_reports_and_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRMKPI_HOME", str(tmp_path))
    monkeypatch.setenv("CRMKPI_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never contacted
    fixture = str(FIXTURES / "hubspot-deals.csv")
    code = main(["import", "--format", "hubspot-deals", fixture, "--dry-run",
                 "--timezone", "America/New_York"])
    err = capsys.readouterr().err
    assert code == 1
    assert "4 row(s), 5 event(s), 1 bad row(s)" in err
    assert f"{fixture}:5: Close Date: is required for a closed won deal" in err
    assert not (tmp_path / "imports").exists()


# ---------------------------------------------------------------------------- resuming


class FlakyPublisher:
    """Acknowledges chunks until `fail_at` (a chunk number), which fails unacknowledged."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.chunks: list[list[dict[str, Any]]] = []

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        if len(self.chunks) + 1 == self.fail_at:
            raise ConnectionError("broker went away")
        self.chunks.append([dict(event) for event in events])
        return len(self.chunks[-1])

    @property
    def published(self) -> list[dict[str, Any]]:
        return [event for chunk in self.chunks for event in chunk]


def deals_file(tmp_path: Path, count: int) -> Path:
    """Deals whose rows give 1 (open) or 2 (won) events, so chunks end mid-row."""
    rows = [{"Record ID": str(n), "Deal Stage": "Closed Won" if n % 3 else "Qualified",
             "Create Date": f"2026-01-{n:02d} 10:00", "Close Date": f"2026-02-{n:02d} 10:00"}
            for n in range(1, count + 1)]
    return write_csv(tmp_path / "deals.csv", ["Record ID", "Deal Stage", "Create Date", "Close Date"], rows)


async def test_an_interrupted_import_resumes_and_publishes_every_event_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "CHUNK", 4)
    path = deals_file(tmp_path, 10)  # 17 events: lines 2-11
    mapped = mapped_deals(path)
    checkpoint = Checkpoint.of(tmp_path / "home", path)
    state = {"format": DEALS.name, "sha256": file_sha256(path)}

    first = FlakyPublisher(fail_at=3)
    with pytest.raises(ConnectionError):
        await publish_export(first, mapped, checkpoint, state, 0, QUIET)
    saved = checkpoint.load()
    assert saved is not None
    assert (saved["events"], saved["line"], saved["complete"]) == (8, 5, False)  # line 6 half done

    start = resume_point(checkpoint, DEALS, file_sha256(path), len(mapped.events))
    second = FlakyPublisher()
    await publish_export(second, mapped, checkpoint, state, start, QUIET)

    assert first.published + second.published == mapped.events
    assert len({event["id"] for event in mapped.events}) == len(mapped.events) == 17
    assert checkpoint.load() == {**state, "events": 17, "line": 11, "complete": True}
    assert checkpoint.path.parent == tmp_path / "home" / "imports"


def test_a_checkpoint_resumes_only_its_own_file_and_format(tmp_path: Path) -> None:
    path = deals_file(tmp_path, 3)
    checkpoint = Checkpoint.of(tmp_path, path)
    checkpoint.save({"format": DEALS.name, "sha256": file_sha256(path), "events": 2, "line": 2})
    assert resume_point(checkpoint, DEALS, file_sha256(path), 5) == 2
    with pytest.raises(ExportError, match="checkpoint of this file is for --format hubspot-deals"):
        resume_point(checkpoint, FORMATS["salesforce-opportunities"], file_sha256(path), 5)
    with pytest.raises(ExportError, match="the file changed since its checkpoint"):
        resume_point(checkpoint, DEALS, "0" * 64, 5)
    assert resume_point(Checkpoint(tmp_path / "none.json"), DEALS, "", 5) == 0


# ---------------------------------------------------------------------------- round trip
#
# Canonical histories (the oracle's generator) written out as each format's export, by this
# test, then imported: the import gives back the events the export was written from, for the
# fields the export carries (times exact to the millisecond, in ISO and naive local forms).

ZONE = ZoneInfo("Asia/Kolkata")  # the --timezone of naive dates; Stripe's are UTC whatever it says
Events = dict[str, list[dict[str, Any]]]
COLUMNS = {  # an export field -> the format's column ("" or absent: the format has none)
    "hubspot-deals": {"id": "Record ID", "stage": "Deal Stage", "amount": "Amount", "currency": "Currency",
                      "created": "Create Date", "closed": "Close Date", "source": "Original Source Type",
                      "customer": "Associated Company IDs (Primary)", "reason": "Closed Lost Reason"},
    "salesforce-opportunities": {"id": "Opportunity ID", "stage": "Stage", "amount": "Amount",
                                 "created": "Created Date", "closed": "Close Date", "source": "Lead Source",
                                 "customer": "Account ID", "reason": "Loss Reason", "won": "Won",
                                 "is_closed": "Closed"},
    "hubspot-contacts": {"id": "Record ID", "created": "Create Date", "converted": "Became a Customer Date",
                         "stage": "Lifecycle Stage", "source": "Original Source",
                         "customer": "Associated Company IDs (Primary)"},
    "salesforce-leads": {"id": "Lead ID", "created": "Created Date", "converted": "Converted Date",
                         "flag": "Converted", "source": "Lead Source", "customer": "Converted Account ID"},
    "hubspot-tickets": {"id": "Ticket ID", "created": "Create date", "closed": "Close date",
                        "replied": "First agent email response date", "priority": "Priority",
                        "source": "Source", "customer": "Associated Company IDs (Primary)"},
    "salesforce-cases": {"id": "Case ID", "created": "Date/Time Opened", "closed": "Date/Time Closed",
                         "priority": "Priority", "source": "Case Origin", "customer": "Account ID"},
    "stripe-subscriptions": {"id": "id", "customer": "Customer ID", "plan": "Plan", "quantity": "Quantity",
                             "currency": "Currency", "interval": "Interval", "amount": "Amount",
                             "status": "Status", "created": "Created (UTC)",
                             "period": "Current Period Start (UTC)", "canceled": "Canceled At (UTC)",
                             "ended": "Ended At (UTC)", "reason": "Cancellation Reason"},
}
STRIPE_REASONS = {"voluntary": "cancellation_requested", "involuntary": "payment_failed"}


@pytest.fixture(scope="module")
def history() -> dict[str, Events]:
    """Distinct events by kind of entity, then by entity id, each entity's events by time."""
    raws = generate_history(3, end=datetime(2026, 11, 20, tzinfo=UTC), n_events=3000,
                            families=("sales", "support", "subscriptions"))
    entities: dict[str, Events] = defaultdict(lambda: defaultdict(list))
    for raw in first_copies(raws):
        kind = raw["type"].split(".")[0]
        key = {"lead": "lead_id", "deal": "deal_id", "ticket": "ticket_id"}.get(kind, "subscription_id")
        entities[kind][raw["data"][key]].append(dict(raw))
    for by_id in entities.values():
        for events in by_id.values():
            events.sort(key=ms)
    return entities


def ms(event: Mapping[str, Any]) -> int:
    return parse_time_ms(event["occurred_at"])


def norm(value: str | None) -> str | None:
    """A segment value as the engine compares it (and the import writes it)."""
    return (value or "").strip().lower() or None


def first(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((e for e in events if e["type"] == kind), None)


@dataclass
class Export:
    """A synthetic export being written: its rows, and the events importing it must give."""

    fmt: str
    rows: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def row(self, **fields: str | None) -> None:
        columns = COLUMNS[self.fmt]
        self.rows.append({columns[k]: v or "" for k, v in fields.items() if columns.get(k)})

    def expect(self, entity: str, original: Mapping[str, Any] | None, **data: Any) -> None:
        """The event the import must give for `original` (None: no event), with this data."""
        if original is not None:
            self.events.append({
                "id": f"import:{self.fmt}:{entity}:{original['type']}", "source": FORMATS[self.fmt].source,
                "type": original["type"], "occurred_at": format_time_ms(ms(original)),
                "data": {k: v for k, v in data.items() if v is not None}})

    def when(self, event: Mapping[str, Any] | None) -> str:
        """An event's time as written: ISO in UTC, or naive local time (every other row)."""
        if event is None:
            return ""
        moment = datetime.fromtimestamp(ms(event) / 1000, UTC)
        if len(self.rows) % 2 == 0:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        local = moment.astimezone(FORMATS[self.fmt].zone or ZONE)
        return local.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    def write(self, path: Path) -> Path:
        return write_csv(path, [name for name in COLUMNS[self.fmt].values() if name], self.rows)


def export_deals(export: Export, deals: Events) -> None:
    hubspot = export.fmt.startswith("hubspot")
    for deal_id, history in sorted(deals.items()):
        created, won, lost = (first(history, f"deal.{kind}") for kind in ("created", "won", "lost"))
        if created is None:
            continue  # an export row always has a creation date
        priced: Mapping[str, Any] = next(
            (e["data"] for e in (won, created) if e and "amount" in e["data"]), {})
        amount, currency = priced.get("amount"), priced.get("currency")
        text = "" if amount is None else f"{Decimal(str(amount)):,}"
        if not hubspot and currency == "EUR":  # a European-formatted amount with its code
            text = "EUR " + text.replace(",", " ").replace(".", ",")
        elif not hubspot and currency:
            text = f"{currency} {text}"
        customer = (won or created)["data"].get("customer_id") or created["data"].get("customer_id")
        channel, reason = created["data"].get("channel"), lost and lost["data"].get("reason")
        export.row(id=deal_id, stage="Closed Won" if won else "Closed Lost" if lost else "Qualified To Buy",
                   amount=text, currency=currency, created=export.when(created),
                   closed=export.when(won or lost), source=channel, customer=customer, reason=reason,
                   won="1" if won else "0", is_closed="1" if won or lost else "0")
        common = {"deal_id": deal_id, "channel": norm(channel)}
        money = {"amount": amount, "currency": currency, "customer_id": customer}
        export.expect(deal_id, created, **common, **money)
        export.expect(deal_id, won, **common, **money)
        export.expect(deal_id, lost, **common, reason=reason)


def export_leads(export: Export, leads: Events) -> None:
    for lead_id, history in sorted(leads.items()):
        created, converted = first(history, "lead.created"), first(history, "lead.converted")
        if created is None:
            continue
        channel = created["data"].get("channel")
        customer = converted["data"].get("customer_id") if converted else None
        export.row(id=lead_id, created=export.when(created), converted=export.when(converted),
                   stage="Customer" if converted else "Lead", flag="1" if converted else "0",
                   source=channel, customer=customer)
        export.expect(lead_id, created, lead_id=lead_id, channel=norm(channel))
        export.expect(lead_id, converted, lead_id=lead_id, customer_id=customer)


def export_tickets(export: Export, tickets: Events) -> None:
    for ticket_id, history in sorted(tickets.items()):
        created = first(history, "ticket.created")
        closings = [e for e in history if e["type"] in ("ticket.resolved", "ticket.reopened")]
        if created is None or len(closings) > 1:
            continue  # an export has one close date: tickets closed once
        resolved = closings[0] if closings else None
        reply = next((e for e in history if e["type"] == "ticket.replied" and e["data"]["author"] == "agent"
                      and e["data"].get("public", True) and "replied" in COLUMNS[export.fmt]), None)
        data = created["data"]
        export.row(id=ticket_id, created=export.when(created), closed=export.when(resolved),
                   replied=export.when(reply), priority=data.get("priority"), source=data.get("channel"),
                   customer=data.get("customer_id"))
        export.expect(ticket_id, created, ticket_id=ticket_id, channel=norm(data.get("channel")),
                      priority=norm(data.get("priority")), customer_id=data.get("customer_id"))
        export.expect(ticket_id, reply, ticket_id=ticket_id, author="agent", public=True)
        export.expect(ticket_id, resolved, ticket_id=ticket_id)


def export_subscriptions(export: Export, subscriptions: Events) -> None:
    for n, (sub_id, history) in enumerate(sorted(subscriptions.items())):
        starts = [e for e in history if e["type"] == "subscription.started"]
        if len(starts) != 1:
            continue  # one row per subscription: reactivations under the same id do not fit
        started, cancelled = starts[0], first(history, "subscription.cancelled")
        renewals = [e for e in history if e["type"] == "subscription.renewed"
                    and (cancelled is None or ms(e) <= ms(cancelled))]
        renewed = renewals[-1] if renewals else None
        data, yearly, quantity = started["data"], n % 3 == 1, 2 if n % 3 == 2 else 1
        amount = Decimal(str(data["mrr"])) * (12 if yearly else 1) / quantity
        reason = cancelled["data"].get("reason") if cancelled else None
        export.row(id=sub_id, customer=data["customer_id"], plan=data.get("plan"), quantity=str(quantity),
                   currency=data["currency"].lower(), interval="year" if yearly else "month",
                   amount=f"{amount:,}", status="canceled" if cancelled else "active",
                   created=export.when(started), period=export.when(renewed or started),
                   canceled=export.when(cancelled), ended=export.when(cancelled),
                   reason=STRIPE_REASONS.get(reason or ""))
        customer = data["customer_id"]
        export.expect(sub_id, started, subscription_id=sub_id, customer_id=customer, mrr=data["mrr"],
                      currency=data["currency"], plan=norm(data.get("plan")))
        export.expect(sub_id, renewed, subscription_id=sub_id, customer_id=customer)
        export.expect(sub_id, cancelled, subscription_id=sub_id, customer_id=customer, reason=reason)


ROUND_TRIPS: dict[str, tuple[str, Callable[[Export, Events], None]]] = {
    "hubspot-deals": ("deal", export_deals),
    "salesforce-opportunities": ("deal", export_deals),
    "hubspot-contacts": ("lead", export_leads),
    "salesforce-leads": ("lead", export_leads),
    "hubspot-tickets": ("ticket", export_tickets),
    "salesforce-cases": ("ticket", export_tickets),
    "stripe-subscriptions": ("subscription", export_subscriptions),
}


def exported(fmt: str, history: dict[str, Events]) -> Export:
    kind, write = ROUND_TRIPS[fmt]
    export = Export(fmt)
    write(export, history[kind])
    return export


@pytest.mark.parametrize("fmt", sorted(ROUND_TRIPS))
def test_round_trip_gives_back_the_exported_events(fmt: str, history: dict[str, Events],
                                                   tmp_path: Path) -> None:
    export = exported(fmt, history)
    path = export.write(tmp_path / f"{fmt}.csv")
    mapped = map_export(path, FORMATS[fmt], ZONE, now_ms=NOW_MS, known_currencies=CURRENCIES)
    assert mapped.bad == []
    assert len(export.rows) >= 100
    assert sorted(mapped.events, key=lambda e: e["id"]) == sorted(export.events, key=lambda e: e["id"])


def test_the_round_trip_covers_every_kind_of_event(history: dict[str, Events]) -> None:
    kinds = {event["type"] for fmt in ROUND_TRIPS for event in exported(fmt, history).events}
    assert kinds == {"deal.created", "deal.won", "deal.lost", "lead.created", "lead.converted",
                     "ticket.created", "ticket.replied", "ticket.resolved", "subscription.started",
                     "subscription.renewed", "subscription.cancelled"}
