"""Salesforce Outbound Messaging: a SOAP message of up to 100 notifications, SOAP Ack answer.

Salesforce does not sign outbound messages: the gateway accepts those whose `OrganizationId`
is `CRMKPI_SALESFORCE_ORG_ID` (the endpoint should also sit behind TLS and, ideally, an IP
allow-list). A notification's id is its `Id`, its time the record's `LastModifiedDate`. A
message carries only the record's latest fields, so a record whose `CreatedDate` equals its
`LastModifiedDate` is taken as just created. The outbound message must include the fields
named below; drive it from workflow rules that fire on the transitions of interest.

| sObject | state | canonical |
|---|---|---|
| Lead | `IsConverted` | `lead.converted` (`ConvertedAccountId`) |
| Lead | just created | `lead.created` (`LeadSource` as channel) |
| Opportunity | `IsClosed` and `IsWon` / not `IsWon` | `deal.won` / `deal.lost` |
| Opportunity | just created / otherwise | `deal.created` / `deal.updated` (`Amount`, `CurrencyIsoCode`) |
| Case | `IsClosed` | `ticket.resolved` |
| Case | just created | `ticket.created` (`Priority`, `Origin` as channel) |
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from streams.gateway.providers.base import (
    Accepted,
    Malformed,
    Payload,
    Provider,
    RawEvent,
    Translation,
    batch,
    canonical,
    iso_ms,
    lowered,
    number,
    optional,
    required,
)
from streams.gateway.signatures import Delivery, verify_salesforce_org

SOURCE = "salesforce"
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
OUTBOUND = "{http://soap.sforce.com/2005/09/outbound}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)

Notification = Mapping[str, Any]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _notification(element: ElementTree.Element) -> dict[str, Any]:
    record = element.find(OUTBOUND + "sObject")
    fields = {} if record is None else {_local(child.tag): child.text for child in record}
    kind = "" if record is None else _local(record.get(XSI_TYPE, "").rpartition(":")[2])
    return {"Id": element.findtext(OUTBOUND + "Id"), "sObject": {"type": kind, **fields}}


def read(org_id: str, delivery: Delivery) -> list[dict[str, Any]]:
    """Parse the SOAP envelope, check its organization, return its notifications."""
    if b"<!DOCTYPE" in delivery.body:
        raise Malformed("a SOAP message must not contain a DTD")
    try:
        root = ElementTree.fromstring(delivery.body)  # noqa: S314 - no DTD, so no entities
    except ElementTree.ParseError as error:
        raise Malformed(f"body is not valid XML: {error}") from None
    message = root.find(f"{SOAP}Body/{OUTBOUND}notifications")
    if message is None:
        raise Malformed("not a Salesforce outbound message (no soapenv:Body/notifications)")
    org_ids = [element.text or "" for element in message.iter(OUTBOUND + "OrganizationId")]
    verify_salesforce_org(org_id, org_ids)
    return [_notification(element) for element in message.iter(OUTBOUND + "Notification")]


def _true(record: Notification, name: str) -> bool:
    return optional(record, name) == "true"


def _money(record: Notification, where: str) -> dict[str, Any]:
    amount = optional(record, "Amount")
    return {
        "amount": None if amount is None else number(amount, where + "Amount"),
        "currency": optional(record, "CurrencyIsoCode"),
    }


def _mapped(record: Notification, new: bool, where: str) -> tuple[str, dict[str, Any]] | None:
    kind = record["type"]
    record_id = required(record, "Id", where)
    if kind == "Lead":
        if _true(record, "IsConverted"):
            customer = optional(record, "ConvertedAccountId")
            return "lead.converted", {"lead_id": record_id, "customer_id": customer}
        if new:
            return "lead.created", {"lead_id": record_id, "channel": lowered(record, "LeadSource")}
        return None
    if kind == "Opportunity":
        deal = {"deal_id": record_id, **_money(record, where)}
        customer = {"customer_id": optional(record, "AccountId")}
        if _true(record, "IsClosed"):
            if _true(record, "IsWon"):
                return "deal.won", {**deal, **customer}
            return "deal.lost", {"deal_id": record_id}
        if new:
            return "deal.created", {**deal, **customer}
        return "deal.updated", deal
    if kind == "Case":
        if _true(record, "IsClosed"):
            return "ticket.resolved", {"ticket_id": record_id}
        if new:
            return "ticket.created", {
                "ticket_id": record_id,
                "customer_id": optional(record, "AccountId"),
                "priority": lowered(record, "Priority"),
                "channel": lowered(record, "Origin"),
            }
    return None


def _translate_item(notification: Payload, where: str) -> RawEvent | None:
    record = notification["sObject"]
    record_where = where + "sObject."
    modified = required(record, "LastModifiedDate", record_where)
    new = optional(record, "CreatedDate") == modified
    mapped = _mapped(record, new, record_where)
    if mapped is None:
        return None
    event_type, data = mapped
    time_ms = iso_ms(modified, record_where + "LastModifiedDate")
    return canonical(SOURCE, required(notification, "Id", where), event_type, time_ms, **data)


def translate(payload: Payload) -> Translation:
    """Canonical events of one outbound message."""
    return batch(payload, _translate_item)


def reply(_: Accepted) -> web.Response:
    """The SOAP acknowledgement Salesforce waits for."""
    return web.Response(status=200, body=ACK, content_type="text/xml", charset="utf-8")


PROVIDER = Provider("salesforce", "salesforce_org_id", read, translate, reply=reply)
