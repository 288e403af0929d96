"""The duration sketch: quantiles within its relative accuracy, whatever the merge order."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpis.sketch import RELATIVE_ACCURACY, quantile_ms, slot_of
from tests.oracle.kpis import quantile_seconds

DURATIONS_MS = st.lists(st.integers(min_value=0, max_value=30 * 86_400_000), min_size=1, max_size=300)
QUANTILES = st.fractions(min_value=0, max_value=1, max_denominator=100)


def sketch(durations_ms: list[int]) -> Counter[int]:
    return Counter(slot_of(duration) for duration in durations_ms)


@given(DURATIONS_MS, DURATIONS_MS, QUANTILES)
def test_a_merged_sketch_quantile_is_within_its_accuracy(first: list[int], second: list[int],
                                                         q: Fraction) -> None:
    exact_ms = float(quantile_seconds(first + second, q) * 1000)
    estimate_ms = quantile_ms(sketch(first) + sketch(second), q)
    assert math.isclose(estimate_ms, exact_ms, rel_tol=RELATIVE_ACCURACY * 1.000001, abs_tol=1e-9)


def test_zero_and_negative_durations_have_slots_in_value_order() -> None:
    durations_ms = [-5_000, -1, 0, 0, 1, 7_000]
    order_statistics = [quantile_ms(sketch(durations_ms), Fraction(k, 5)) for k in range(6)]
    assert order_statistics == pytest.approx(durations_ms, rel=RELATIVE_ACCURACY)
