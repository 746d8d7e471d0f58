"""How a plan is split over processes: endpoint slices, owners, RTP port ranges."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.engine.processes import rtp_slices
from callmeter.engine.run import Shard


@given(st.integers(min_value=1, max_value=5000), st.integers(min_value=1, max_value=16))
def test_slices_cover_every_endpoint_exactly_once(size: int, count: int) -> None:
    owned = [list(Shard(k, count).owned(size)) for k in range(count)]
    assert sorted(i for part in owned for i in part) == list(range(size))
    for k, part in enumerate(owned):
        assert all(Shard(0, count).owner(i, size) == k for i in part)


def test_rtp_slices_are_disjoint_even_odd_pairs() -> None:
    slices = rtp_slices(10001, 20000, 3)
    assert slices[0][0] == 10002 and all(low % 2 == 0 and high % 2 == 1 for low, high in slices)
    for (_, high), (low, _) in itertools.pairwise(slices):
        assert high < low
    assert slices[-1][1] <= 20000


def test_rtp_range_too_small_for_the_processes() -> None:
    with pytest.raises(ValueError, match="fewer than the 4 processes"):
        rtp_slices(10000, 10005, 4)
