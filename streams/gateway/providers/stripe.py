"""Stripe `Event` webhooks (`Stripe-Signature`); id = `event.id`, time = `event.created`.

| Stripe event | canonical |
|---|---|
| `customer.subscription.created` | `subscription.started` |
| `customer.subscription.updated` changing items, plan or quantity | `subscription.changed` |
| `customer.subscription.deleted` | `subscription.cancelled`, at `ended_at` when given |
| `invoice.paid` with `billing_reason` `subscription_cycle` | `subscription.renewed` |
| `checkout.session.completed` in `payment` mode | `order.placed` |

Everything else (`invoice.payment_failed` included) maps to no KPI. MRR is the sum over the
subscription items of price `unit_amount` × `quantity`, normalised to one month (a year / 12,
a week × 52 / 12, a day × 365 / 12, divided by `interval_count`), in major currency units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from streams.gateway.providers.base import (
    Payload,
    Provider,
    RawEvent,
    Translation,
    Untranslatable,
    canonical,
    expect_object,
    one,
    optional,
    required,
    seconds_ms,
    signed,
)
from streams.gateway.signatures import verify_stripe

SOURCE = "stripe"
OBJECT = "data.object."
MONTHLY = {
    "month": Decimal(1),
    "year": Decimal(1) / 12,
    "week": Decimal(52) / 12,
    "day": Decimal(365) / 12,
}
# Currencies whose Stripe amounts are not in hundredths (docs.stripe.com/currencies).
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
MICRO = Decimal("0.000001")
MRR_FIELDS = ("items", "plan", "quantity")
INVOLUNTARY = ("payment_failed", "payment_disputed")

StripeObject = Mapping[str, Any]


def _currency(obj: StripeObject) -> str:
    return str(required(obj, "currency", OBJECT)).upper()


def _major(minor: Decimal, obj: StripeObject) -> float:
    currency = _currency(obj)
    digits = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return float((minor / 10**digits).quantize(MICRO))


def _item_monthly(item: StripeObject, where: str) -> Decimal:
    amount = optional(item, "price.unit_amount")
    if amount is None:
        amount = required(item, "price.unit_amount_decimal", where)
    interval = required(item, "price.recurring.interval", where)
    if interval not in MONTHLY:
        raise Untranslatable(f"{where}price.recurring.interval", f"unknown interval {interval!r}")
    count = optional(item, "price.recurring.interval_count") or 1
    quantity = optional(item, "quantity")
    quantity = 1 if quantity is None else quantity
    return Decimal(str(amount)) * Decimal(quantity) * MONTHLY[interval] / Decimal(count)


def _mrr(sub: StripeObject) -> float:
    items = required(sub, "items.data", OBJECT)
    where = f"{OBJECT}items.data."
    monthly = sum((_item_monthly(item, f"{where}{i}.") for i, item in enumerate(items)), Decimal(0))
    return _major(monthly, sub)


def _plan(sub: StripeObject) -> str | None:
    return optional(sub, "metadata.plan") or optional(sub, "items.data.0.price.nickname")


def _event(event: StripeObject, event_type: str, time_ms: int | None = None, **data: Any) -> RawEvent:
    if time_ms is None:
        time_ms = seconds_ms(required(event, "created"), "created")
    return canonical(SOURCE, required(event, "id"), event_type, time_ms, **data)


def _started(event: StripeObject, sub: StripeObject) -> RawEvent:
    return _event(
        event,
        "subscription.started",
        subscription_id=required(sub, "id", OBJECT),
        customer_id=required(sub, "customer", OBJECT),
        mrr=_mrr(sub),
        currency=_currency(sub),
        plan=_plan(sub),
    )


def _changed(event: StripeObject, sub: StripeObject) -> RawEvent | None:
    previous = optional(event, "data.previous_attributes") or {}
    if not any(name in previous for name in MRR_FIELDS):
        return None
    return _event(
        event,
        "subscription.changed",
        subscription_id=required(sub, "id", OBJECT),
        mrr=_mrr(sub),
        currency=_currency(sub),
        plan=_plan(sub),
    )


def _cancelled(event: StripeObject, sub: StripeObject) -> RawEvent:
    reason = optional(sub, "cancellation_details.reason")
    if reason is not None:
        reason = "involuntary" if reason in INVOLUNTARY else "voluntary"
    ended_at = optional(sub, "ended_at")
    return _event(
        event,
        "subscription.cancelled",
        None if ended_at is None else seconds_ms(ended_at, OBJECT + "ended_at"),
        subscription_id=required(sub, "id", OBJECT),
        customer_id=optional(sub, "customer"),
        reason=reason,
    )


def _renewed(event: StripeObject, invoice: StripeObject) -> RawEvent | None:
    if optional(invoice, "billing_reason") != "subscription_cycle":
        return None
    subscription = optional(invoice, "subscription") or optional(
        invoice, "parent.subscription_details.subscription"
    )
    if subscription is None:
        raise Untranslatable(OBJECT + "subscription", "is required")
    return _event(
        event,
        "subscription.renewed",
        subscription_id=subscription,
        customer_id=optional(invoice, "customer"),
    )


def _order(event: StripeObject, session: StripeObject) -> RawEvent | None:
    if optional(session, "mode") != "payment":
        return None
    customer = optional(session, "customer") or required(session, "customer_details.email", OBJECT)
    amount = required(session, "amount_total", OBJECT)
    return _event(
        event,
        "order.placed",
        order_id=required(session, "id", OBJECT),
        customer_id=customer,
        amount=_major(Decimal(amount), session),
        currency=_currency(session),
    )


HANDLERS: dict[str, Callable[[StripeObject, StripeObject], RawEvent | None]] = {
    "customer.subscription.created": _started,
    "customer.subscription.updated": _changed,
    "customer.subscription.deleted": _cancelled,
    "invoice.paid": _renewed,
    "checkout.session.completed": _order,
}


def translate(payload: Payload) -> Translation:
    """Canonical events of one Stripe event."""
    event = expect_object(payload)
    handler = HANDLERS.get(required(event, "type"))
    if handler is None:
        return Translation([], ignored=1)
    return one(handler(event, required(event, "data.object")))


PROVIDER = Provider("stripe", "secret_stripe", signed(verify_stripe), translate)
