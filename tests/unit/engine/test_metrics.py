"""Metric windows and run totals: counters add up, percentiles come from merged histograms."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from callmeter.engine.metrics import GroupMetrics, MetricSet, StreamResult, merge_sets, total_of


def stream(received: int, jitter: float = 1.0) -> StreamResult:
    return StreamResult(
        sent_packets=received,
        sent_bytes=172 * received,
        received_packets=received,
        received_bytes=172 * received,
        lost_packets=received // 100,
        expected_packets=received + received // 100,
        jitter_ms=jitter,
        rtt_ms=2.0,
        mos=4.3,
    )


@given(st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=10))
def test_windows_add_up_to_the_run(steps: list[int]) -> None:
    metrics = GroupMetrics()
    windows: list[MetricSet] = []
    counted: StreamResult | None = None
    received = 0
    for step in steps[:-1]:
        received += step
        current = stream(received)
        metrics.stream_progress(current, counted)
        counted = current
        windows.append(metrics.take_window())
    received += steps[-1]
    metrics.stream_final(stream(received), counted)
    windows.append(metrics.take_window())
    assert sum(w.received_packets for w in windows) == received
    assert sum(w.lost_packets for w in windows) == metrics.run_set.lost_packets == received // 100
    assert metrics.run_set.received_packets == received
    assert metrics.run_set.jitter_ms.count == 1  # the run records each stream once


def test_total_counts_each_call_once_and_merges_histograms() -> None:
    callers, callees = GroupMetrics(), GroupMetrics()
    for setup in (100.0, 200.0, 300.0):
        callers.call_attempted()
        callers.call_established(setup, 10.0)
        callees.call_attempted()
        callees.call_established(None, None)
    callers.call_attempted()
    callers.call_failed(486, "486 Busy Here from 127.0.0.1:5060")
    callees.call_failed(487, "incoming call not answered before the run ended")
    callers.stream_final(stream(1000, jitter=0.5), None)
    callees.stream_final(stream(1000, jitter=4.0), None)
    total = total_of({"callers": callers.run_set, "callees": callees.run_set}, ["callers"])
    report = total.as_report()
    assert report["sip"]["calls"] == {
        "attempted": 4,
        "established": 3,
        "failed": 1,
        "failed_by_code": {"486": 1},
        "causes": {"486 Busy Here from 127.0.0.1:5060": 1},  # the callers' side only
    }
    assert report["rtp"]["received"]["packets"] == 2000
    assert report["rtp"]["jitter_ms"]["max"] == 4.0
    assert abs(report["sip"]["setup_time_ms"]["p50"] - 200.0) <= 2.0
    assert report["rtp"]["loss_pct"] == round(100 * 20 / 2020, 4)


def test_wire_round_trip_for_other_processes() -> None:
    metrics = GroupMetrics()
    metrics.register_attempted()
    metrics.register_done(12.5)
    metrics.call_attempted()
    metrics.call_failed(408)
    metrics.stream_final(stream(500), None)
    again = MetricSet.from_wire(metrics.run_set.to_wire())
    assert again.as_report() == metrics.run_set.as_report()


def test_causes_merge_across_processes_and_sort_by_count() -> None:
    """Each process counts its causes; the merged report lists the most frequent first."""
    one, two = GroupMetrics(), GroupMetrics()
    for metrics, causes in ((one, ["b", "a", "a"]), (two, ["a", "c", "c", "c"])):
        for cause in causes:
            metrics.register_attempted()
            metrics.register_done(None, failed_code=408, cause=f"no answer ({cause})")
    wire = [MetricSet.from_wire(m.run_set.to_wire()) for m in (one, two)]
    register = merge_sets(wire).as_report()["sip"]["register"]
    assert register["failed"] == 7
    assert list(register["causes"].items()) == [
        ("no answer (a)", 3),
        ("no answer (c)", 3),
        ("no answer (b)", 1),
    ]
    assert register["failed_by_code"] == {"408": 7}


def media_stream(state: str, received: int = 0, **more: object) -> StreamResult:
    result = stream(received) if received else StreamResult(sent_packets=50, sent_bytes=8600)
    return dataclasses.replace(result, media_state=state, **more)  # type: ignore[arg-type]


def test_streams_without_media_are_counted_and_never_perfect() -> None:
    metrics = GroupMetrics()
    metrics.stream_final(media_stream("no_media"), None)
    metrics.stream_final(media_stream("no_media", rtcp_received=3), None)
    rtp = metrics.run_set.as_report()["rtp"]
    assert (rtp["streams"], rtp["no_media"], rtp["without_media"]) == (2, 2, 2)
    assert rtp["loss_pct"] is None  # nothing expected: no figure, not 0.000 %
    assert rtp["jitter_ms"]["mean"] is None and rtp["mos"]["min"] is None
    hint = rtp["no_media_hint"]
    assert hint.startswith("2 of 2 streams without media (every stream")
    assert "1 got no RTP and no RTCP" in hint and "SDP_IP / EXTERNAL_IP" in hint
    assert "1 got the peer's RTCP but no RTP" in hint


def test_media_states_merge_across_processes_and_name_each_cause() -> None:
    one, two = GroupMetrics(), GroupMetrics()
    one.stream_final(media_stream("ok", 500, events_received=9, other_ssrc_packets=9), None)
    one.stream_final(media_stream("one_way"), None)
    one.stream_final(media_stream("not_expected"), None)  # a call that never got media up
    two.stream_final(media_stream("stopped", 100, stopped_at_s=2.5), None)
    two.stream_final(media_stream("ok", 500, cn_received=4, other_payload_received=1), None)
    wire = [MetricSet.from_wire(m.run_set.to_wire()) for m in (one, two)]
    rtp = merge_sets(wire).as_report()["rtp"]
    assert {k: rtp[k] for k in ("streams", "no_media", "one_way", "stopped", "without_media")} == {
        "streams": 4,
        "no_media": 0,
        "one_way": 1,
        "stopped": 1,
        "without_media": 2,
    }
    assert rtp["received"] == {
        "packets": 1100,
        "bytes": 172 * 1100,
        "events": 9,
        "cn": 4,
        "other_payload": 1,
        "other_ssrc": 9,
    }
    hint = rtp["no_media_hint"]
    assert hint.startswith("2 of 4 streams without media: 1 one-way")
    assert "1 stopped receiving while the call was up (no RTP for 2 s)" in hint


def test_a_stream_counts_its_state_once_per_window_and_once_in_the_run() -> None:
    metrics = GroupMetrics()
    first = media_stream("waiting")
    metrics.stream_progress(first, None)
    assert metrics.take_window().media_states == {"waiting": 1}
    later = media_stream("no_media")
    metrics.stream_progress(later, first)
    metrics.stream_final(later, later)  # sampled in this window already: state not again
    window = metrics.take_window()
    assert window.media_states == {"no_media": 1}
    assert metrics.run_set.media_states == {"no_media": 1}
    assert metrics.run_set.as_report()["rtp"]["no_media_hint"] is not None


def test_all_media_present_has_no_hint() -> None:
    metrics = GroupMetrics()
    metrics.stream_final(stream(100), None)
    rtp = metrics.run_set.as_report()["rtp"]
    assert rtp["streams"] == 1 and rtp["without_media"] == 0 and rtp["no_media_hint"] is None


def test_the_report_names_the_emodel_values_per_codec_across_processes() -> None:
    pcmu = {
        "ie": 0.0,
        "bpl": 4.3,
        "plc": False,
        "source": "G.711 without PLC",
        "provisional": False,
    }
    g722 = {"ie": 0.0, "bpl": 4.3, "plc": False, "source": "as G.711", "provisional": True}
    one, two = GroupMetrics(), GroupMetrics()
    one.stream_final(media_stream("ok", 100, codec="PCMU", emodel=pcmu), None)
    two.stream_final(media_stream("ok", 100, codec="G722", emodel=g722), None)
    two.stream_final(media_stream("ok", 100, codec="VP8"), None)  # video: no E-model
    wire = [MetricSet.from_wire(m.run_set.to_wire()) for m in (one, two)]
    assert merge_sets(wire).as_report()["rtp"]["emodel"] == {"G722": g722, "PCMU": pcmu}
    progress = GroupMetrics()
    progress.stream_progress(media_stream("ok", 10, codec="PCMU", emodel=pcmu), None)
    assert progress.take_window().as_report()["rtp"]["emodel"] == {"PCMU": pcmu}
