"""Sales and marketing: leads, deals, site visits and spend."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from kpis.buckets import Contribution
from kpis.config import KpiConfig
from kpis.entities import Entity, Family, InternalEvent
from kpis.families.customers import DEAL_WON
from kpis.formulas import Kpi, count, fraction_of, mean_money, mean_seconds, money_sum, ratio
from kpis.values import segment, to_micro
from streams.events import Event


def _place(event: Event, config: KpiConfig) -> list[Any]:
    """[time, channel, region] of an event, with bounded segment labels."""
    data = event.data
    return [
        event.time_ms,
        segment(data.get("channel"), "channel", config),
        segment(data.get("region"), "region", config),
    ]


class Lead(Entity):
    """A lead: when and where it was created, and whether it was touched or converted."""

    kind = "lead"
    key_field = "lead_id"
    fields = ("created", "touched", "converted")

    def __init__(self) -> None:
        super().__init__()
        self.created: list[Any] | None = None
        self.touched = False
        self.converted = False

    def update(self, event: Event, config: KpiConfig) -> None:
        """Record creation (earliest wins), a touch or a conversion."""
        if event.type == "lead.created":
            if self.created is None or event.time_ms < self.created[0]:
                self.created = _place(event, config)
        elif event.type == "lead.touched":
            self.touched = True
        else:
            self.converted = True

    def contributions(self, tenant: str) -> list[Contribution]:
        """Created, converted and engaged (touched or converted) counts at creation time."""
        if self.created is None:
            return []
        time_ms, channel, region = self.created
        segments = (("channel", channel), ("region", region))
        out: list[Contribution] = [(time_ms, tenant, "leads_created", segments, 1)]
        if self.converted:
            out.append((time_ms, tenant, "leads_converted", segments, 1))
        if self.touched or self.converted:
            out.append((time_ms, tenant, "leads_engaged", segments, 1))
        return out


class Deal(Entity):
    """A deal: creation time, latest known amount, and its won and lost events."""

    kind = "deal"
    key_field = "deal_id"
    fields = ("created_ms", "amount", "won", "lost", "won_customers")

    def __init__(self) -> None:
        super().__init__()
        self.created_ms: int | None = None
        self.amount: list[Any] | None = None  # [time, uid, micro-units], latest by (time, uid)
        self.won: dict[str, list[Any]] = {}
        self.lost: dict[str, list[Any]] = {}
        self.won_customers: dict[str, int] = {}  # customer named by a deal.won -> earliest win

    def update(self, event: Event, config: KpiConfig) -> None:
        """Fold in creation, a new amount, a win or a loss."""
        data = event.data
        if event.type == "deal.created" and (
            self.created_ms is None or event.time_ms < self.created_ms
        ):
            self.created_ms = event.time_ms
        if event.type != "deal.lost" and data.get("amount") is not None:
            stamp = [event.time_ms, event.uid]
            if self.amount is None or stamp > self.amount[:2]:
                self.amount = [*stamp, to_micro(data["amount"], data.get("currency"), config)]
        if event.type == "deal.won":
            self.won[event.uid] = _place(event, config)
            if data.get("customer_id") is not None:
                customer = str(data["customer_id"])
                earliest = self.won_customers.get(customer, event.time_ms)
                self.won_customers[customer] = min(earliest, event.time_ms)
        elif event.type == "deal.lost":
            self.lost[event.uid] = _place(event, config)

    def contributions(self, tenant: str) -> list[Contribution]:
        """Wins (with revenue and cycle where known) and losses at their own times."""
        out: list[Contribution] = []
        for time_ms, channel, region in self.won.values():
            segments = (("channel", channel), ("region", region))
            out.append((time_ms, tenant, "deals_won", segments, 1))
            if self.amount is not None:
                out.append((time_ms, tenant, "won_revenue_micro", segments, self.amount[2]))
                out.append((time_ms, tenant, "deals_won_with_amount", segments, 1))
            if self.created_ms is not None:
                out.append((time_ms, tenant, "sales_cycle_ms", segments, time_ms - self.created_ms))
                out.append((time_ms, tenant, "sales_cycle_deals", segments, 1))
        for time_ms, channel, region in self.lost.values():
            out.append((time_ms, tenant, "deals_lost", (("channel", channel), ("region", region)), 1))
        return out

    def emits(self, tenant: str, entity_id: str) -> list[InternalEvent]:
        """Its earliest win per customer, for that customer's acquisition time."""
        return [
            (customer, DEAL_WON, won_ms, {"customer_id": customer, "deal_id": entity_id, "won_ms": won_ms})
            for customer, won_ms in sorted(self.won_customers.items())
        ]


def site_visit(event: Event, config: KpiConfig) -> list[Contribution]:
    """Visits, by channel."""
    channel = segment(event.data.get("channel"), "channel", config)
    count = int(event.data.get("count", 1))
    return [(event.time_ms, event.tenant, "visits", (("channel", channel),), count)]


def spend_recorded(event: Event, config: KpiConfig) -> list[Contribution]:
    """Spend in micro-units, by category and channel."""
    data = event.data
    channel = segment(data.get("channel"), "channel", config)
    micro = to_micro(data["amount"], data.get("currency"), config)
    name = f"spend_{data['category']}_micro"
    return [(event.time_ms, event.tenant, name, (("channel", channel),), micro)]




def _roi(return_micro: Fraction, spend_micro: int) -> float | None:
    return ratio(return_micro - spend_micro, spend_micro)


CHANNEL_REGION = ("channel", "region")

SALES_KPIS = (
    Kpi("leads_created", "Leads created", "count of lead.created in W", "count",
        ("leads_created",), count("leads_created"), CHANNEL_REGION),
    Kpi("visits", "Site visits", "sum of site.visit count in W", "count",
        ("visits",), count("visits"), ("channel",)),
    Kpi("traffic_to_lead_rate", "Leads per visit", "leads_created / visits", "ratio",
        ("leads_created", "visits"), fraction_of("leads_created", "visits"), ("channel",)),
    Kpi("lead_conversion_rate", "Share of leads created in W that converted",
        "leads created in W and converted / leads created in W", "ratio",
        ("leads_converted", "leads_created"), fraction_of("leads_converted", "leads_created"),
        CHANNEL_REGION),
    Kpi("lead_abandonment_rate", "Share of leads created in W never touched nor converted",
        "(leads created in W - touched or converted) / leads created in W", "ratio",
        ("leads_created", "leads_engaged"),
        lambda t: ratio(t("leads_created") - t("leads_engaged"), t("leads_created")), ("channel",)),
    Kpi("deals_won", "Deals won", "count of deal.won in W", "count",
        ("deals_won",), count("deals_won"), CHANNEL_REGION),
    Kpi("deals_lost", "Deals lost", "count of deal.lost in W", "count",
        ("deals_lost",), count("deals_lost"), CHANNEL_REGION),
    Kpi("win_rate", "Win rate", "deals_won / (deals_won + deals_lost)", "ratio",
        ("deals_won", "deals_lost"),
        lambda t: ratio(t("deals_won"), t("deals_won") + t("deals_lost")), CHANNEL_REGION),
    Kpi("won_revenue", "Revenue of deals won", "sum of won deal amounts in W", "currency",
        ("won_revenue_micro",), money_sum("won_revenue_micro"), CHANNEL_REGION),
    Kpi("avg_deal_size", "Average won deal size", "won_revenue / deals won with an amount",
        "currency", ("won_revenue_micro", "deals_won_with_amount"),
        mean_money("won_revenue_micro", "deals_won_with_amount"), CHANNEL_REGION),
    Kpi("sales_cycle_seconds_avg", "Mean time from deal created to won",
        "mean(won - created) over deals won in W with a known creation", "seconds",
        ("sales_cycle_ms", "sales_cycle_deals"), mean_seconds("sales_cycle_ms", "sales_cycle_deals"),
        ("channel",)),
    Kpi("spend_marketing", "Marketing spend", "sum of spend.recorded (marketing) in W", "currency",
        ("spend_marketing_micro",), money_sum("spend_marketing_micro"), ("channel",)),
    Kpi("spend_sales", "Sales spend", "sum of spend.recorded (sales) in W", "currency",
        ("spend_sales_micro",), money_sum("spend_sales_micro"), ("channel",)),
    Kpi("spend_retention", "Retention spend", "sum of spend.recorded (retention) in W", "currency",
        ("spend_retention_micro",), money_sum("spend_retention_micro"), ("channel",)),
    Kpi("spend_crm", "CRM spend", "sum of spend.recorded (crm) in W", "currency",
        ("spend_crm_micro",), money_sum("spend_crm_micro"), ("channel",)),
    Kpi("marketing_roi", "Marketing ROI", "(won_revenue - spend_marketing) / spend_marketing",
        "ratio", ("won_revenue_micro", "spend_marketing_micro"),
        lambda t: _roi(Fraction(t("won_revenue_micro")), t("spend_marketing_micro")), ("channel",)),
    Kpi("crm_roi", "CRM ROI", "(won_revenue * gross_margin - spend_crm) / spend_crm", "ratio",
        ("won_revenue_micro", "spend_crm_micro"),
        lambda t: _roi(t("won_revenue_micro") * t.gross_margin, t("spend_crm_micro")), ("channel",)),
)

SALES = Family(
    name="sales",
    entities={
        "lead.created": Lead,
        "lead.touched": Lead,
        "lead.converted": Lead,
        "deal.created": Deal,
        "deal.updated": Deal,
        "deal.won": Deal,
        "deal.lost": Deal,
    },
    stateless={"site.visit": site_visit, "spend.recorded": spend_recorded},
    kpis=SALES_KPIS,
)
