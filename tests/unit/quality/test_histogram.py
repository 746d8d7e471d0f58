"""Mergeable log-bucketed histogram: accuracy, exact merge, JSON round trip."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.quality.histogram import Histogram


def exact_percentile(values: list[float], p: float) -> float:
    """Nearest rank: the value of rank ceil(p/100 n) in sorted order (rank 1 for p = 0)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_bucket_layout_by_hand() -> None:
    # 1.0 = 0.5 * 2**1 -> bucket 1 * 64 + floor((0.5 - 0.5) * 128) = 64
    # 3.0 = 0.75 * 2**2 -> 2 * 64 + floor(0.25 * 128) = 160
    # Bucket 160 spans [0.75, 0.7578125) * 4 = [3.0, 3.03125): midpoint 3.015625.
    h = Histogram([1.0, 3.0])
    assert h.buckets() == {64: 1, 160: 1}
    h = Histogram([3.0, 3.0, 3.03])
    assert h.percentile(50) == 3.015625  # midpoint; inside [min, max] so not clamped


def test_summary_values() -> None:
    h = Histogram([0.0, 2.0, 4.0, 10.0])
    assert (h.count, h.min, h.max, h.mean) == (4, 0.0, 10.0, 4.0)
    assert h.percentile(0) == 0.0  # rank 1: the zero bucket
    assert h.percentile(25) == 0.0
    assert h.percentile(100) == 10.0  # clamped to the exact max
    empty = Histogram()
    assert (empty.count, empty.min, empty.max, empty.mean, empty.percentile(50)) == (
        0,
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_refuses_values_it_cannot_bucket(bad: float) -> None:
    with pytest.raises(ValueError):
        Histogram().record(bad)


def test_percentile_argument_checked() -> None:
    with pytest.raises(ValueError):
        Histogram([1.0]).percentile(101)


values = st.lists(
    st.floats(0.0, 1e9, allow_nan=False, allow_infinity=False)
    | st.floats(1e-6, 500.0)
    | st.just(0.0),
    min_size=1,
    max_size=300,
)
percents = st.floats(0.0, 100.0)


@given(values, percents)
def test_percentile_within_one_percent_of_exact(data: list[float], p: float) -> None:
    got = Histogram(data).percentile(p)
    want = exact_percentile(data, p)
    assert got is not None
    assert abs(got - want) <= 0.01 * want  # documented bound: 1/128 = 0.78%


@given(values, values)
def test_merge_equals_histogram_of_concatenation(a: list[float], b: list[float]) -> None:
    merged = Histogram(a)
    merged.merge(Histogram(b))
    whole = Histogram(a + b)
    assert merged.buckets() == whole.buckets()
    assert (merged.count, merged.min, merged.max) == (whole.count, whole.min, whole.max)
    assert merged.mean == pytest.approx(whole.mean)
    for p in (0, 50, 90, 95, 99, 100):
        assert merged.percentile(p) == whole.percentile(p)
    assert Histogram.merged([Histogram(a), Histogram(b)]).buckets() == whole.buckets()


@given(st.lists(st.floats(0.0, 1e6), max_size=100))
def test_json_round_trip(data: list[float]) -> None:
    h = Histogram(data)
    wire = json.dumps(h.to_dict())
    back = Histogram.from_dict(json.loads(wire))
    assert back.to_dict() == h.to_dict()
    assert back.buckets() == h.buckets()
    assert back.percentile(95) == h.percentile(95)


def test_to_dict_is_compact() -> None:
    # 10,000 values spread over 1..100 ms: at most 64 buckets per power of two over
    # log2(100) = 6.6 octaves, so a few hundred numbers however many values.
    h = Histogram(1 + i * 0.0099 for i in range(10_000))
    d = h.to_dict()
    assert len(d["b"]) // 2 <= 64 * 7
    assert len(json.dumps(d)) < 4000


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"v": 2, "n": 0, "sum": 0.0, "min": None, "max": None, "zeros": 0, "b": []},
        {"v": 1, "n": 2, "sum": 1.0, "min": 1.0, "max": 1.0, "zeros": 0, "b": [64, 1]},
        {"v": 1, "n": 1, "sum": 1.0, "min": 1.0, "max": 1.0, "zeros": 0, "b": [64]},
        {"v": 1, "n": 1, "sum": 1.0, "min": 1.0, "max": 1.0, "zeros": 0, "b": [64, 0]},
        {"v": 1, "n": 1, "sum": 1.0, "min": None, "max": 1.0, "zeros": 0, "b": [64, 1]},
    ],
)
def test_from_dict_rejects_inconsistent_input(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Histogram.from_dict(broken)


def test_extreme_values_do_not_overflow() -> None:
    h = Histogram([5e-324, 1.7e308])
    assert h.percentile(100) == 1.7e308
    assert h.percentile(0) == 5e-324
