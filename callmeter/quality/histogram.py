"""A mergeable log-bucketed histogram (HDR-like) for latency, jitter and MOS summaries.

Bucket layout (fixed, so histograms from different processes merge exactly by adding
counts): a positive value v = m * 2**e with m in [0.5, 1) (``math.frexp``, exact) goes to
bucket ``e * 64 + floor((m - 0.5) * 128)``: 64 equal-width sub-buckets per power of two.
A bucket's width is at most 1/64 of its lower bound, and a percentile is reported as the
bucket's midpoint (clamped to the observed min and max), so its relative error is at most
1/128 (0.78%) of the exact value of the same rank (for normal floats, above 2.2e-308;
subnormal midpoints round coarser, and min/max stay exact). Zero has a bucket of its own;
negative, NaN and infinite values are refused.

Percentiles use the nearest-rank definition: percentile(p) is the value of rank
ceil(p/100 * count) in sorted order (rank 1 for p = 0).

``to_dict``/``from_dict`` give a compact JSON-safe form (only non-empty buckets), for
worker processes to ship to the parent, which merges them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["SUB_BUCKETS", "Histogram"]

#: Sub-buckets per power of two: relative error at most 1 / (2 * SUB_BUCKETS).
SUB_BUCKETS = 64
_LAYOUT_VERSION = 1
_frexp = math.frexp


def _index(value: float) -> int:
    m, e = _frexp(value)
    return e * SUB_BUCKETS + int((m - 0.5) * (2 * SUB_BUCKETS))


def _midpoint(index: int) -> float:
    e, j = divmod(index, SUB_BUCKETS)
    # Midpoint of [0.5 + j/128, 0.5 + (j+1)/128) * 2**e, computed below 2**e (no overflow).
    return math.ldexp(0.5 + (2 * j + 1) / (4 * SUB_BUCKETS), e)


class Histogram:
    """Counts of non-negative values in fixed log buckets; mergeable, JSON-shippable."""

    __slots__ = ("_buckets", "_count", "_max", "_min", "_sum", "_zeros")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self._buckets: dict[int, int] = {}
        self._zeros = 0
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        for value in values:
            self.record(value)

    def record(self, value: float, count: int = 1) -> None:
        """Add ``value`` (>= 0, finite) ``count`` times."""
        if not value >= 0 or value == math.inf:
            raise ValueError(f"histogram values must be finite and >= 0, got {value!r}")
        if count < 1:
            raise ValueError(f"count {count} must be >= 1")
        if value == 0:
            self._zeros += count
        else:
            index = _index(value)
            self._buckets[index] = self._buckets.get(index, 0) + count
        self._count += count
        self._sum += value * count
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts into this histogram (exact: same bucket layout)."""
        buckets = self._buckets
        for index, n in other._buckets.items():
            buckets[index] = buckets.get(index, 0) + n
        self._zeros += other._zeros
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        """A new histogram holding the sum of ``histograms``."""
        out = cls()
        for h in histograms:
            out.merge(h)
        return out

    @property
    def count(self) -> int:
        """Number of values recorded."""
        return self._count

    @property
    def min(self) -> float | None:
        """Smallest value recorded (exact), or None when empty."""
        return self._min if self._count else None

    @property
    def max(self) -> float | None:
        """Largest value recorded (exact), or None when empty."""
        return self._max if self._count else None

    @property
    def mean(self) -> float | None:
        """Mean of the values (exact up to float addition), or None when empty."""
        return self._sum / self._count if self._count else None

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile, ``p`` in 0..100, within 0.78% of the exact one."""
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} not in 0..100")
        if not self._count:
            return None
        rank = max(1, math.ceil(p / 100 * self._count))
        if rank <= self._zeros:
            return 0.0
        seen = self._zeros
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(self._max, max(self._min, _midpoint(index)))
        return self._max  # not reached: the counts add up to count

    def buckets(self) -> dict[int, int]:
        """A copy of the non-empty buckets, index -> count (zero values not included)."""
        return dict(self._buckets)

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-safe form: ``b`` is ``[index, count, index, count, ...]`` ascending."""
        flat: list[int] = []
        for index in sorted(self._buckets):
            flat += (index, self._buckets[index])
        return {
            "v": _LAYOUT_VERSION,
            "n": self._count,
            "sum": self._sum,
            "min": self.min,
            "max": self.max,
            "zeros": self._zeros,
            "b": flat,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        """Rebuild a histogram from :meth:`to_dict` output; ValueError when inconsistent."""
        try:
            if data["v"] != _LAYOUT_VERSION:
                raise ValueError(f"histogram layout version {data['v']!r} not supported")
            flat = [int(x) for x in data["b"]]
            zeros = int(data["zeros"])
            count = int(data["n"])
            total = float(data["sum"])
            low, high = data["min"], data["max"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a histogram dict: {exc}") from None
        if len(flat) % 2 or zeros < 0 or any(n <= 0 for n in flat[1::2]):
            raise ValueError("histogram buckets malformed")
        buckets = dict(zip(flat[::2], flat[1::2], strict=True))
        if len(buckets) * 2 != len(flat) or zeros + sum(buckets.values()) != count:
            raise ValueError("histogram counts do not add up")
        out = cls()
        out._buckets = buckets
        out._zeros = zeros
        out._count = count
        out._sum = total
        if count:
            if low is None or high is None or not 0 <= float(low) <= float(high):
                raise ValueError("histogram min/max malformed")
            out._min = float(low)
            out._max = float(high)
        return out

    def __repr__(self) -> str:
        return f"<Histogram count={self._count} min={self.min} max={self.max}>"
