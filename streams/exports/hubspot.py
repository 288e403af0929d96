"""HubSpot CRM exports (Contacts, Deals, Tickets views exported to CSV); docs/import.md.

HubSpot writes property labels as headers, its record id as `Record ID`, and dates in the
account's time zone, which `--timezone` names.
"""

from __future__ import annotations

from streams.exports.fields import Row, Unmappable
from streams.exports.records import Deal, ExportFormat, Lead, Ticket, channel, priority, stage_outcome

SOURCE = "hubspot"
SOURCES = ("Original Source", "Original Source Type", "Latest Traffic Source", "Latest Source")
COMPANY = ("Associated Company ID", "Associated Company IDs (Primary)", "Associated Company IDs")


def read_deal(row: Row) -> Deal:
    """A deal: closed won or lost by its stage, at its close date."""
    return Deal.from_report(
        row, stage_outcome(row.required("Deal Stage")), "deal", created="Create Date",
        currencies=("Currency", "Deal Currency Code"), source=row.text(*SOURCES),
        customer_id=row.first_id(*COMPANY), loss_reason="Closed Lost Reason",
    )


def read_contact(row: Row) -> Lead:
    """A contact: a lead, converted when it became a customer."""
    converted = row.time("Became a Customer Date")
    if converted is None and (row.text("Lifecycle Stage") or "").lower() == "customer":
        raise Unmappable("Became a Customer Date: is required when Lifecycle Stage is Customer")
    return Lead(
        created_ms=row.required_time("Create Date"),
        channel=channel(row.text(*SOURCES)),
        converted_ms=converted,
        customer_id=row.first_id(*COMPANY),
    )


def read_ticket(row: Row) -> Ticket:
    """A ticket: first agent email response and close date, when present."""
    return Ticket(
        created_ms=row.required_time("Create date"),
        channel=channel(row.text("Source")),
        priority=priority(row.text("Priority")),
        customer_id=row.first_id(*COMPANY),
        first_reply_ms=row.time("First agent email response date"),
        resolved_ms=row.time("Close date"),
    )


DEALS = ExportFormat("hubspot-deals", SOURCE, ("Record ID", "Deal ID"),
                     (("Create Date",), ("Deal Stage",)), read_deal)
CONTACTS = ExportFormat("hubspot-contacts", SOURCE, ("Record ID", "Contact ID"),
                        (("Create Date",),), read_contact)
TICKETS = ExportFormat("hubspot-tickets", SOURCE, ("Ticket ID", "Record ID"),
                       (("Create date",),), read_ticket)
