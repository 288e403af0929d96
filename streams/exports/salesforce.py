"""Salesforce report exports ("Details Only" CSV of Opportunities, Leads, Cases); docs/import.md.

Reports show 15-character record ids; the API and outbound messages (the live gateway) use the
18-character form, so ids are extended to 18 characters and both paths name one record alike.
Dates are in the exporting user's time zone and locale (US `MM/DD/YYYY hh:mm AM` or ISO).
"""

from __future__ import annotations

import re

from streams.exports.fields import Row
from streams.exports.records import Deal, ExportFormat, Lead, Ticket, channel, priority, stage_outcome

SOURCE = "salesforce"
SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ID15 = re.compile(r"[A-Za-z0-9]{15}")


def id18(record_id: str) -> str:
    """The 18-character form of a 15-character Salesforce id (others unchanged)."""
    if not ID15.fullmatch(record_id):
        return record_id
    suffix = ""
    for start in range(0, 15, 5):
        chunk = record_id[start:start + 5]
        bits = sum(1 << index for index, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += SUFFIX_ALPHABET[bits]
    return record_id + suffix


def _account(row: Row, *names: str) -> str | None:
    account = row.text(*names)
    return None if account is None else id18(account)


def _outcome(row: Row) -> str | None:
    if row.flag("Won"):
        return "won"
    closed = row.flag("Closed")
    if closed is not None:
        return "lost" if closed else None
    return stage_outcome(row.required("Stage", "Stage Name"))


def read_opportunity(row: Row) -> Deal:
    """An opportunity: won or lost by its `Won`/`Closed` checkboxes (else its stage)."""
    return Deal.from_report(
        row, _outcome(row), "opportunity", created="Created Date",
        currencies=("Opportunity Currency", "Currency"), source=row.text("Lead Source"),
        customer_id=_account(row, "Account ID"), loss_reason="Loss Reason",
    )


def read_lead(row: Row) -> Lead:
    """A lead, converted by its `Converted` checkbox (else a `Closed - Converted` status)."""
    converted = row.flag("Converted")
    if converted is None:
        converted = "converted" in (row.text("Status", "Lead Status") or "").lower()
    why = "is required for a converted lead"
    return Lead(
        created_ms=row.required_time("Created Date"),
        channel=channel(row.text("Lead Source")),
        converted_ms=row.required_time("Converted Date", why=why) if converted else None,
        customer_id=_account(row, "Converted Account ID") if converted else None,
    )


def read_case(row: Row) -> Ticket:
    """A case: opened, and resolved when it has a closing time."""
    return Ticket(
        created_ms=row.required_time("Date/Time Opened"),
        channel=channel(row.text("Case Origin")),
        priority=priority(row.text("Priority")),
        customer_id=_account(row, "Account ID"),
        resolved_ms=row.time("Date/Time Closed"),
    )


OPPORTUNITIES = ExportFormat(
    "salesforce-opportunities", SOURCE, ("Opportunity ID",),
    (("Created Date",), ("Stage", "Stage Name", "Won", "Closed")), read_opportunity, record_id=id18,
)
LEADS = ExportFormat("salesforce-leads", SOURCE, ("Lead ID",), (("Created Date",),), read_lead,
                     record_id=id18)
CASES = ExportFormat("salesforce-cases", SOURCE, ("Case ID",), (("Date/Time Opened",),), read_case,
                     record_id=id18)
