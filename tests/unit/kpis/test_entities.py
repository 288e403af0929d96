"""Contribution deltas and which entity kinds emit internal events."""

from __future__ import annotations

from kpis.buckets import Contribution
from kpis.entities import contribution_delta
from kpis.families.commerce import Buyer, Cart
from kpis.families.customers import Customer
from kpis.families.subscriptions import Subscription

WEB = (("channel", "web"),)
ADS = (("channel", "ads"),)


def test_the_delta_sums_per_slot_in_order_of_first_appearance_after_then_before() -> None:
    before: list[Contribution] = [
        (1, "t", "orders", WEB, 1), (2, "t", "orders", ADS, 1), (3, "t", "x", (), 2)]
    after: list[Contribution] = [
        (5, "t", "y", (), 1), (1, "t", "orders", WEB, 1), (3, "t", "x", (), 1), (5, "t", "y", (), 2)]
    assert contribution_delta(before, after) == [
        (5, "t", "y", (), 3), (3, "t", "x", (), -1), (2, "t", "orders", ADS, -1)]


def test_unchanged_contributions_give_no_delta() -> None:
    same: list[Contribution] = [(1, "t", "orders", WEB, 1), (1, "t", "orders", WEB, -1)]
    assert contribution_delta(same, list(same)) == []
    assert contribution_delta([], []) == []


def test_only_kinds_that_override_emits_are_emitting() -> None:
    assert Buyer.emitting() and Subscription.emitting()
    assert not Cart.emitting() and not Customer.emitting()
