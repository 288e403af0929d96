"""CRM adoption: distinct active users, records, routine-task time in whole ms."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.kpis.engine import event, kpis

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def test_active_users_are_distinct_and_task_time_is_truncated_to_ms() -> None:
    events = [
        event("1", "user.login", 3 * HOUR, user_id="ann"),  # outside 1h, but ann logs in again
        event("2", "user.login", 30 * MINUTE, user_id="ann"),
        event("3", "user.login", 20 * MINUTE, user_id="ann"),
        event("4", "user.login", 10 * MINUTE, user_id="bob"),
        event("5", "user.login", 2 * HOUR, user_id="cid"),
        event("6", "record.created", 5 * MINUTE, user_id="bob", object="contact"),
        event("7", "task.completed", 5 * MINUTE, user_id="bob", duration_seconds=1.2349),
        event("8", "task.completed", 4 * MINUTE, user_id="ann", duration_seconds=3),
    ]
    assert kpis(events, ("active_users", "records_created", "routine_task_seconds_avg"), "1h") == {
        "active_users": 2,
        "records_created": 1,
        "routine_task_seconds_avg": 4.234 / 2,
    }
