"""CRM adoption: active users, records created and routine-task time."""

from __future__ import annotations

from kpis.buckets import Contribution
from kpis.config import KpiConfig
from kpis.entities import Entity, Family
from kpis.formulas import Kpi, count, mean_seconds
from kpis.values import to_ms
from streams.events import Event


class User(Entity):
    """A CRM user's latest login: a user is active in a window ending at or after its events
    iff its latest login is in the window."""

    kind = "user"
    key_field = "user_id"
    fields = ("last_login_ms",)

    def __init__(self) -> None:
        super().__init__()
        self.last_login_ms: int | None = None

    def update(self, event: Event, config: KpiConfig) -> None:
        """Keep the latest login."""
        if self.last_login_ms is None or event.time_ms > self.last_login_ms:
            self.last_login_ms = event.time_ms

    def contributions(self, tenant: str) -> list[Contribution]:
        """One active user at the latest login time."""
        if self.last_login_ms is None:
            return []
        return [(self.last_login_ms, tenant, "active_users", (), 1)]


def record_created(event: Event, config: KpiConfig) -> list[Contribution]:
    """One record."""
    return [(event.time_ms, event.tenant, "records_created", (), 1)]


def task_completed(event: Event, config: KpiConfig) -> list[Contribution]:
    """One routine task and its duration in whole ms."""
    duration_ms = to_ms(event.data["duration_seconds"])
    return [
        (event.time_ms, event.tenant, "routine_tasks", (), 1),
        (event.time_ms, event.tenant, "routine_task_ms", (), duration_ms),
    ]


ADOPTION_KPIS = (
    Kpi("active_users", "Distinct users who logged in", "distinct user_id of user.login in W", "count",
        ("active_users",), count("active_users")),
    Kpi("records_created", "CRM records created", "count of record.created in W", "count",
        ("records_created",), count("records_created")),
    Kpi("routine_task_seconds_avg", "Mean routine-task time",
        "mean duration_seconds of task.completed in W", "seconds",
        ("routine_task_ms", "routine_tasks"), mean_seconds("routine_task_ms", "routine_tasks")),
)

ADOPTION = Family(
    name="adoption",
    entities={"user.login": User},
    stateless={"record.created": record_created, "task.completed": task_completed},
    kpis=ADOPTION_KPIS,
)
