"""The calls CSV (``callmeter run --calls``): one row per call, streams summed."""

from __future__ import annotations

import csv
from pathlib import Path

from callmeter.engine.metrics import StreamResult
from callmeter.engine.run import CallRecord
from callmeter.runner import write_calls_csv


def test_a_row_sums_the_streams_and_counts_stray_rtp(tmp_path: Path) -> None:
    audio = StreamResult(
        sent_packets=500,
        received_packets=498,
        lost_packets=2,
        expected_packets=500,
        jitter_ms=0.4,
        rtt_ms=1.5,
        mos=4.3,
        stray_packets=30,
        events_received=12,
        other_ssrc_packets=12,
    )
    video = StreamResult(
        sent_packets=100,
        received_packets=100,
        expected_packets=100,
        media_state="stopped",
        stopped_at_s=4.25,
    )
    call = CallRecord(
        group="callers",
        direction="out",
        local="sip:a@x",
        remote="sip:b@y",
        started=1.0,
        pdd_ms=3.0,
        setup_ms=205.0,
        ended=11.0,
        final_code=200,
        end="bye",
        streams=[audio, video],
    )
    path = tmp_path / "calls.csv"
    write_calls_csv(str(path), [call])
    [row] = list(csv.DictReader(path.open()))
    assert (row["rtp_sent"], row["rtp_received"], row["rtp_lost"]) == ("600", "598", "2")
    assert row["loss_pct"] == "0.333" and row["jitter_ms"] == "0.400"
    assert row["rtp_stray"] == "30"
    assert (row["media"], row["media_stopped_s"]) == ("ok/stopped", "4.250")
    assert (row["rtp_events"], row["rtp_cn"], row["rtp_other_ssrc"]) == ("12", "0", "12")


def test_a_call_without_media_has_no_quality_figures(tmp_path: Path) -> None:
    """Nothing received: loss, jitter and MOS are empty, never 0 or perfect."""
    silent = StreamResult(sent_packets=500, media_state="no_media")
    call = CallRecord("callers", "out", "a", "b", 1.0, final_code=200, streams=[silent])
    path = tmp_path / "calls.csv"
    write_calls_csv(str(path), [call])
    [row] = list(csv.DictReader(path.open()))
    assert row["media"] == "no_media" and row["rtp_received"] == "0"
    assert (row["loss_pct"], row["jitter_ms"], row["mos"]) == ("", "", "")
