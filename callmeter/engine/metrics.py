"""Metric accumulation for a test run: SPEC.md "Metrics and the report".

A :class:`GroupMetrics` counts one group's registrations and calls and keeps histograms (the
mergeable :class:`~callmeter.quality.histogram.Histogram`) of register time, PDD, setup time and
per-stream jitter, RTT and MOS.  ``window()`` gives the figures since the last window and starts a
new one; ``report()`` the figures of the whole run.  Both have the report's shape::

    {"sip": {"register": {"attempted", "succeeded", "failed", "time_ms": {"p50", "p95", "max"},
                          "failed_by_code": {CODE: n}, "causes": {CAUSE: n}},
             "calls": {"attempted", "established", "failed", "failed_by_code": {CODE: n},
                       "causes": {CAUSE: n}},
             "setup_time_ms": {...}, "pdd_ms": {...}},
     "rtp": {"sent": {"packets", "bytes"},
             "received": {"packets", "bytes", "events", "cn", "other_payload", "other_ssrc"},
             "lost": {"packets"}, "loss_pct",
             "jitter_ms": {"mean", "p95", "max"}, "rtt_ms": {...}, "mos": {"mean", "min"},
             "streams", "no_media", "one_way", "stopped", "without_media", "no_media_hint",
             "emodel": {CODEC: {"ie", "bpl", "plc", "source", "provisional"}}}}

``streams`` counts the streams that should have received media (sendrecv, recvonly) and
``no_media``/``one_way``/``stopped`` those of them that got none or stopped getting it
(:data:`callmeter.rtp.stream.MEDIA_STATES`), ``without_media`` their sum, and
``no_media_hint`` names the likely cause (None when every stream got its media). In the run's
figures each stream counts once, with its final state; in a window, each stream sampled in
it (and each that ended unsampled), with its state then. Loss, jitter and MOS are None when
no media packet arrived: missing media is never perfect. ``emodel`` names, per codec, the
G.113 Ie and Bpl the MOS was computed with and whether they assume packet-loss concealment
(a plan's ``emodel.plc``).

Percentiles of the total (and of merged processes) are computed from merged histograms, never
by averaging percentiles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callmeter.quality.histogram import Histogram
from callmeter.rtp.stats import MEDIA_TIMEOUT_S

__all__ = [
    "WITHOUT_MEDIA",
    "GroupMetrics",
    "MetricSet",
    "StreamResult",
    "merge_sets",
    "total_of",
]


@dataclass
class StreamResult:
    """The receive figures of one RTP stream (one direction of one call, seen by us)."""

    sent_packets: int = 0
    sent_bytes: int = 0
    received_packets: int = 0
    received_bytes: int = 0
    lost_packets: int = 0
    expected_packets: int = 0
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    mos: float | None = None
    stray_packets: int = 0  # received from another address than the SDP's (RFC 4961)
    #: callmeter.rtp.stream.MEDIA_STATES; stopped_at_s: last packet, s from the stream's start
    media_state: str = "ok"
    stopped_at_s: float | None = None
    events_received: int = 0  # RFC 4733 telephone events (in received_packets too)
    cn_received: int = 0  # RFC 3389 comfort noise
    other_payload_received: int = 0  # a payload type not negotiated
    other_ssrc_packets: int = 0  # from another SSRC than the main media one (any type)
    rtcp_received: int = 0  # the peer's RTCP packets (tells a closed path from a silent peer)
    codec: str = ""  # the negotiated codec
    #: The E-model's codec values behind ``mos``: {"ie", "bpl", "plc", "source",
    #: "provisional"} (callmeter.quality.emodel.CodecImpairment.as_dict); None: no E-model.
    emodel: dict[str, Any] | None = None

    @property
    def without_media(self) -> bool:
        """Should have received media and did not, or stopped receiving it."""
        return self.media_state in WITHOUT_MEDIA


#: The media states that count as missing media.
WITHOUT_MEDIA = ("no_media", "one_way", "stopped")
#: The media states of streams that should have received (counted in "streams").
_EXPECTED = ("ok", "waiting", *WITHOUT_MEDIA)


@dataclass
class MetricSet:
    """Counters and histograms for one period (a window, or the whole run)."""

    register_attempted: int = 0
    register_succeeded: int = 0
    register_failed: int = 0
    calls_attempted: int = 0
    calls_established: int = 0
    calls_failed: int = 0
    failed_by_code: Counter[str] = field(default_factory=Counter)
    register_failed_by_code: Counter[str] = field(default_factory=Counter)
    #: Why calls and registrations failed, one line per cause ("no answer from HOST:PORT
    #: over UDP", "403 Forbidden from HOST:PORT"), with counts.
    call_causes: Counter[str] = field(default_factory=Counter)
    register_causes: Counter[str] = field(default_factory=Counter)
    register_ms: Histogram = field(default_factory=Histogram)
    setup_ms: Histogram = field(default_factory=Histogram)
    pdd_ms: Histogram = field(default_factory=Histogram)
    sent_packets: int = 0
    sent_bytes: int = 0
    received_packets: int = 0
    received_bytes: int = 0
    lost_packets: int = 0
    expected_packets: int = 0
    jitter_ms: Histogram = field(default_factory=Histogram)
    rtt_ms: Histogram = field(default_factory=Histogram)
    mos: Histogram = field(default_factory=Histogram)
    events_received: int = 0
    cn_received: int = 0
    other_payload_received: int = 0
    other_ssrc_packets: int = 0
    #: Streams by media state (MEDIA_STATES), and of those without RTP the ones whose peer's
    #: RTCP did arrive (the path is open: the peer sends no media).
    media_states: Counter[str] = field(default_factory=Counter)
    no_rtp_with_rtcp: int = 0
    #: Codec -> the E-model values its streams' MOS used (ie, bpl, plc, source, provisional).
    emodel: dict[str, dict[str, Any]] = field(default_factory=dict)

    def merge(self, other: MetricSet) -> None:
        for name in (
            "register_attempted",
            "register_succeeded",
            "register_failed",
            "calls_attempted",
            "calls_established",
            "calls_failed",
            "sent_packets",
            "sent_bytes",
            "received_packets",
            "received_bytes",
            "lost_packets",
            "expected_packets",
            "events_received",
            "cn_received",
            "other_payload_received",
            "other_ssrc_packets",
            "no_rtp_with_rtcp",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.media_states.update(other.media_states)
        self.emodel.update(other.emodel)
        self.failed_by_code.update(other.failed_by_code)
        self.register_failed_by_code.update(other.register_failed_by_code)
        self.call_causes.update(other.call_causes)
        self.register_causes.update(other.register_causes)
        for name in ("register_ms", "setup_ms", "pdd_ms", "jitter_ms", "rtt_ms", "mos"):
            getattr(self, name).merge(getattr(other, name))

    def add_stream(self, stream: StreamResult, state: bool = True) -> None:
        """Count ``stream``'s packets and sample its gauges; with ``state`` its media state."""
        if state:
            self.media_states[stream.media_state] += 1
            if stream.media_state in ("no_media", "one_way") and stream.rtcp_received:
                self.no_rtp_with_rtcp += 1
        if stream.emodel is not None and stream.codec:
            self.emodel[stream.codec] = stream.emodel
        self.events_received += stream.events_received
        self.cn_received += stream.cn_received
        self.other_payload_received += stream.other_payload_received
        self.other_ssrc_packets += stream.other_ssrc_packets
        self.sent_packets += stream.sent_packets
        self.sent_bytes += stream.sent_bytes
        self.received_packets += stream.received_packets
        self.received_bytes += stream.received_bytes
        self.lost_packets += stream.lost_packets
        self.expected_packets += stream.expected_packets
        if stream.jitter_ms is not None:
            self.jitter_ms.record(stream.jitter_ms)
        if stream.rtt_ms is not None:
            self.rtt_ms.record(stream.rtt_ms)
        if stream.mos is not None:
            self.mos.record(stream.mos)

    @property
    def loss_pct(self) -> float | None:
        """Lost over expected media packets, in %; None when no media packet arrived."""
        if self.expected_packets <= 0:
            return None
        return 100.0 * max(0, self.lost_packets) / self.expected_packets

    @property
    def streams(self) -> int:
        """Streams that should have received media."""
        return sum(self.media_states[state] for state in _EXPECTED)

    @property
    def without_media(self) -> int:
        """Streams that should have received media and got none, or stopped getting it."""
        return sum(self.media_states[state] for state in WITHOUT_MEDIA)

    def no_media_hint(self) -> str | None:
        """The likely cause of missing media, in words; None when no stream lacks it."""
        states = self.media_states
        missing = self.without_media
        if not missing:
            return None
        parts: list[str] = []
        none, one_way, stopped = states["no_media"], states["one_way"], states["stopped"]
        silent_peer = self.no_rtp_with_rtcp
        if one_way:
            parts.append(
                f"{one_way} one-way: the peer's RTCP reports receiving our RTP but its RTP "
                "never reached us: a NAT or firewall in front of us drops it (open UDP "
                "RTP_PORT_MIN..RTP_PORT_MAX inbound), or the peer sends it elsewhere than our "
                "SDP says: SDP_IP / EXTERNAL_IP must be the address the peer reaches us at"
            )
        if none:
            closed = none - min(silent_peer, none)
            if closed:
                parts.append(
                    f"{closed} got no RTP and no RTCP: nothing of the peer's media reaches us: "
                    "check SDP_IP / EXTERNAL_IP (behind a NAT, the SDP must carry the public "
                    "address, and the NAT must forward RTP_PORT_MIN..RTP_PORT_MAX), a firewall "
                    "dropping inbound UDP, or a peer that sends no media"
                )
            if none - closed:
                parts.append(
                    f"{none - closed} got the peer's RTCP but no RTP: the path is open, the "
                    "peer sends no media (its direction, codec, or a media server not playing)"
                )
        if stopped:
            parts.append(
                f"{stopped} stopped receiving while the call was up (no RTP for "
                f"{MEDIA_TIMEOUT_S:g} s): a NAT binding or firewall UDP timeout that expired, "
                "the peer ending its media early (a pcap shorter than the call), or silence "
                "suppression"
            )
        everything = " (every stream: a setting, not bad luck)" if missing == self.streams else ""
        return f"{missing} of {self.streams} streams without media{everything}: " + "; ".join(parts)

    def as_report(self) -> dict[str, Any]:
        """The SPEC.md shape; None for a figure with no sample."""
        return {
            "sip": {
                "register": {
                    "attempted": self.register_attempted,
                    "succeeded": self.register_succeeded,
                    "failed": self.register_failed,
                    "time_ms": _summary(self.register_ms),
                    "failed_by_code": dict(sorted(self.register_failed_by_code.items())),
                    "causes": _by_count(self.register_causes),
                },
                "calls": {
                    "attempted": self.calls_attempted,
                    "established": self.calls_established,
                    "failed": self.calls_failed,
                    "failed_by_code": dict(sorted(self.failed_by_code.items())),
                    "causes": _by_count(self.call_causes),
                },
                "setup_time_ms": _summary(self.setup_ms),
                "pdd_ms": _summary(self.pdd_ms),
            },
            "rtp": {
                "sent": {"packets": self.sent_packets, "bytes": self.sent_bytes},
                "received": {
                    "packets": self.received_packets,
                    "bytes": self.received_bytes,
                    "events": self.events_received,
                    "cn": self.cn_received,
                    "other_payload": self.other_payload_received,
                    "other_ssrc": self.other_ssrc_packets,
                },
                "lost": {"packets": max(0, self.lost_packets)},
                "loss_pct": _round(self.loss_pct, 4),
                "jitter_ms": _spread(self.jitter_ms),
                "rtt_ms": _spread(self.rtt_ms),
                "mos": {
                    "mean": _round(self.mos.mean if self.mos.count else None),
                    "min": _round(self.mos.min if self.mos.count else None),
                },
                "streams": self.streams,
                "no_media": self.media_states["no_media"],
                "one_way": self.media_states["one_way"],
                "stopped": self.media_states["stopped"],
                "without_media": self.without_media,
                "no_media_hint": self.no_media_hint(),
                "emodel": dict(sorted(self.emodel.items())),
            },
        }

    def to_wire(self) -> dict[str, Any]:
        """Everything, histograms included, for merging in another process."""
        wire: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if isinstance(value, Histogram):
                wire[name] = value.to_dict()
            elif isinstance(value, Counter):
                wire[name] = dict(value)
            else:
                wire[name] = value
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> MetricSet:
        metric = cls()
        for name, value in wire.items():
            current = getattr(metric, name, None)
            if isinstance(current, Histogram):
                setattr(metric, name, Histogram.from_dict(value))
            elif isinstance(current, Counter):
                setattr(metric, name, Counter(value))
            elif current is not None:
                setattr(metric, name, value)
        return metric


class GroupMetrics:
    """A group's metrics for the current window and for the whole run."""

    def __init__(self) -> None:
        self.window_set = MetricSet()
        self.run_set = MetricSet()

    def _both(self) -> Iterable[MetricSet]:
        return (self.window_set, self.run_set)

    def register_attempted(self) -> None:
        for target in self._both():
            target.register_attempted += 1

    def register_done(
        self, time_ms: float | None, failed_code: int | None = None, cause: str | None = None
    ) -> None:
        for target in self._both():
            if failed_code is None:
                target.register_succeeded += 1
                if time_ms is not None:
                    target.register_ms.record(time_ms)
            else:
                target.register_failed += 1
                target.register_failed_by_code[str(failed_code)] += 1
                target.register_causes[cause or str(failed_code)] += 1

    def call_attempted(self) -> None:
        for target in self._both():
            target.calls_attempted += 1

    def call_established(self, setup_ms: float | None, pdd_ms: float | None) -> None:
        for target in self._both():
            target.calls_established += 1
            if setup_ms is not None:
                target.setup_ms.record(setup_ms)
            if pdd_ms is not None:
                target.pdd_ms.record(pdd_ms)

    def call_failed(self, code: int, cause: str | None = None) -> None:
        for target in self._both():
            target.calls_failed += 1
            target.failed_by_code[str(code)] += 1
            target.call_causes[cause or str(code)] += 1

    def stream_progress(self, current: StreamResult, counted: StreamResult | None) -> None:
        """A stream still running: its new packets since ``counted`` go into this window, and
        its current jitter, RTT and MOS are sampled for the window."""
        self.window_set.add_stream(_minus(current, counted))

    def stream_final(self, final: StreamResult, counted: StreamResult | None) -> None:
        """A stream that ended: the run gets its final figures, the window what is new."""
        self.run_set.add_stream(final)
        self.window_set.add_stream(_minus(final, counted), state=counted is None)

    def take_window(self) -> MetricSet:
        window, self.window_set = self.window_set, MetricSet()
        return window


def merge_sets(sets: Iterable[MetricSet]) -> MetricSet:
    total = MetricSet()
    for one in sets:
        total.merge(one)
    return total


def _minus(current: StreamResult, counted: StreamResult | None) -> StreamResult:
    """The counters of ``current`` not yet in ``counted``; the gauges as they are now."""
    if counted is None:
        return current
    return StreamResult(
        sent_packets=current.sent_packets - counted.sent_packets,
        sent_bytes=current.sent_bytes - counted.sent_bytes,
        received_packets=current.received_packets - counted.received_packets,
        received_bytes=current.received_bytes - counted.received_bytes,
        lost_packets=current.lost_packets - counted.lost_packets,
        expected_packets=current.expected_packets - counted.expected_packets,
        jitter_ms=current.jitter_ms,
        rtt_ms=current.rtt_ms,
        mos=current.mos,
        stray_packets=current.stray_packets - counted.stray_packets,
        media_state=current.media_state,
        stopped_at_s=current.stopped_at_s,
        events_received=current.events_received - counted.events_received,
        cn_received=current.cn_received - counted.cn_received,
        other_payload_received=current.other_payload_received - counted.other_payload_received,
        other_ssrc_packets=current.other_ssrc_packets - counted.other_ssrc_packets,
        rtcp_received=current.rtcp_received,
        codec=current.codec,
        emodel=current.emodel,
    )


def total_of(sets: Mapping[str, MetricSet], callers: Iterable[str]) -> MetricSet:
    """The run's total: RTP and registrations of every group; calls counted once.

    When the worker calls itself, each call is an outgoing call of a caller group and an
    incoming call of a callee group; the total counts the callers' side (where setup time and
    PDD are measured) whenever the plan has caller groups.
    """
    total = merge_sets(sets.values())
    calling = [sets[name] for name in callers if name in sets]
    if calling:
        callers_only = merge_sets(calling)
        total.calls_attempted = callers_only.calls_attempted
        total.calls_established = callers_only.calls_established
        total.calls_failed = callers_only.calls_failed
        total.failed_by_code = callers_only.failed_by_code
        total.call_causes = callers_only.call_causes
    return total


def _by_count(causes: Counter[str]) -> dict[str, int]:
    """Causes, the most frequent first (ties by text, so reports compare equal)."""
    return dict(sorted(causes.items(), key=lambda item: (-item[1], item[0])))


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _summary(histogram: Histogram) -> dict[str, float | None]:
    if not histogram.count:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": _round(histogram.percentile(50)),
        "p95": _round(histogram.percentile(95)),
        "max": _round(histogram.max),
    }


def _spread(histogram: Histogram) -> dict[str, float | None]:
    if not histogram.count:
        return {"mean": None, "p95": None, "max": None}
    return {
        "mean": _round(histogram.mean),
        "p95": _round(histogram.percentile(95)),
        "max": _round(histogram.max),
    }
