"""CRM export files (CSV) mapped to canonical events: pure mapping, no Kafka (docs/import.md)."""

from __future__ import annotations

from streams.exports import hubspot, salesforce, stripe
from streams.exports.fields import Row, Unmappable
from streams.exports.records import ExportFormat, RawEvent

FORMATS: dict[str, ExportFormat] = {
    export.name: export
    for export in (
        hubspot.DEALS,
        hubspot.CONTACTS,
        hubspot.TICKETS,
        salesforce.OPPORTUNITIES,
        salesforce.LEADS,
        salesforce.CASES,
        stripe.SUBSCRIPTIONS,
    )
}

__all__ = ["FORMATS", "ExportFormat", "RawEvent", "Row", "Unmappable"]
