"""Stripe Dashboard exports of subscriptions (Billing > Subscriptions > Export); docs/import.md.

Stripe writes dates in UTC (`Created (UTC)`), amounts in major currency units, one plan per row.
MRR is `Amount x Quantity` normalised to one month as the live gateway does for webhooks.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from streams.exports.fields import Row, Unmappable
from streams.exports.records import ExportFormat, Subscription, segment

SOURCE = "stripe"
MONTHLY = {  # the gateway's normalisation (streams/gateway/providers/stripe.py)
    "month": Decimal(1),
    "year": Decimal(1) / 12,
    "week": Decimal(52) / 12,
    "day": Decimal(365) / 12,
}
MICRO = Decimal("0.000001")
INVOLUNTARY = ("payment_failed", "payment_disputed")
NEVER_STARTED = ("incomplete", "incomplete_expired")
STARTED = ("Created (UTC)", "Start Date (UTC)", "Start (UTC)")


def monthly(amount: Decimal, quantity: Decimal, interval: str, count: Decimal) -> Decimal:
    """The MRR of a price: amount x quantity per `count` intervals, per month, 6 decimals."""
    if interval not in MONTHLY:
        raise Unmappable(f"Interval: unknown interval {interval!r} (expected day, week, month or year)")
    if count <= 0:
        raise Unmappable("Interval Count: must be at least 1")
    return (amount * quantity * MONTHLY[interval] / count).quantize(MICRO)


def read_subscription(row: Row) -> Subscription | None:
    """A subscription; None for one that never started (`incomplete`, `incomplete_expired`)."""
    status = (row.text("Status") or "").lower()
    if status in NEVER_STARTED:
        return None
    amount, currency = row.money("Amount", "Plan Amount")
    if amount is None:
        raise Unmappable("Amount: is required")
    interval = row.required("Interval", "Plan Interval").lower()
    count = row.number("Interval Count", "Plan Interval Count", default=Decimal(1))
    quantity = row.number("Quantity", default=Decimal(1))
    ended = row.time("Ended At (UTC)")
    if ended is None and status in ("", "canceled"):
        ended = row.time("Canceled At (UTC)")
    reason = row.text("Cancellation Reason")
    return Subscription(
        started_ms=row.required_time(*STARTED),
        customer_id=row.required("Customer ID", "Customer"),
        mrr=monthly(amount, quantity, interval, count),
        currency=row.code("Currency", "Plan Currency") or currency,
        plan=segment(row.text("Plan", "Plan Nickname", "Product")),
        renewed_ms=row.time("Current Period Start (UTC)"),
        cancelled_ms=ended,
        reason=None if reason is None else ("involuntary" if reason in INVOLUNTARY else "voluntary"),
    )


SUBSCRIPTIONS = ExportFormat(
    "stripe-subscriptions", SOURCE, ("id", "Subscription ID"),
    (("Customer ID", "Customer"), STARTED, ("Amount", "Plan Amount"), ("Interval", "Plan Interval")),
    read_subscription, zone=UTC,
)
