"""Generated default audio: tone and speech-like signal (length, level, spectrum, pauses)."""

from __future__ import annotations

import math
from array import array

import pytest

from callmeter.media import g711
from callmeter.media.signal import (
    DEFAULT_TONE_HZ,
    SpeechConfig,
    dbm0_to_dbov,
    rms_dbov,
    speech_like,
    talk_spurts,
    tone,
)


def _goertzel_dbov(samples: array[int], frequency: float, rate: int) -> float:
    """Level (dBov, RMS of a sine) of one frequency by a single-bin DFT (Goertzel)."""
    w = 2 * math.pi * frequency / rate
    coeff = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    amplitude = 2 * math.sqrt(max(power, 0.0)) / len(samples)  # peak of the sine
    return 20 * math.log10(amplitude / math.sqrt(2) / 32768) if amplitude else -math.inf


def test_dbm0_mapping() -> None:
    # A full-scale sine is +3.17 dBm0 (G.711 mu-law) and -3.01 dBov.
    assert dbm0_to_dbov(3.17) == pytest.approx(-3.01)
    assert dbm0_to_dbov(-16.0) == pytest.approx(-22.18)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_tone_length_level_and_spectrum(rate: int) -> None:
    samples = tone(0.5, rate)
    assert isinstance(samples, array) and samples.typecode == "h"
    assert len(samples) == rate // 2
    # Level: rounding to integers adds at most 1/sqrt(12) LSB of noise, far below 0.05 dB.
    assert rms_dbov(samples) == pytest.approx(dbm0_to_dbov(-16.0), abs=0.05)
    # 0.5 s of 1004 Hz is 502 whole cycles: the DFT bin holds the whole tone...
    assert _goertzel_dbov(samples, DEFAULT_TONE_HZ, rate) == pytest.approx(
        rms_dbov(samples), abs=0.05
    )
    # ...and bins elsewhere (harmonics, 1 kHz away) hold only rounding noise.
    for other in (2008.0, 3012.0, 2000.0, 500.0):
        assert _goertzel_dbov(samples, other, rate) < rms_dbov(samples) - 60


def test_tone_survives_g711() -> None:
    samples = tone(0.5)
    decoded = g711.pcm_samples(g711.ulaw_decode(g711.ulaw_encode(samples)))
    # G.711 at -16 dBm0 keeps a signal to distortion ratio of about 35 dB.
    error = array("h", [a - b for a, b in zip(samples, decoded, strict=True)])
    assert rms_dbov(samples) - rms_dbov(error) > 30


def test_tone_options_and_errors() -> None:
    assert tone(0.01, 8000, 1000.0, -3.02)[2] == round(32768 * 10 ** (-3.02 / 20) * math.sqrt(2))
    with pytest.raises(ValueError, match="clips"):
        tone(0.1, 8000, 1000.0, 0.0)
    with pytest.raises(ValueError, match="frequency"):
        tone(0.1, 8000, 4000.0)
    with pytest.raises(ValueError, match="sample rate"):
        tone(0.1, 4000)


def test_talk_spurts_respect_the_configured_ranges() -> None:
    config = SpeechConfig()
    for seed in range(20):
        spurts = talk_spurts(30.0, seed, config)
        ends = [start for start, _ in spurts[1:]] + [30.0]
        for (start, end), following in zip(spurts, ends, strict=True):
            assert 1.0 - 1e-9 <= end - start <= 2.0 + 1e-9
            assert 0.5 - 1e-9 <= following - end <= 1.0 + 1e-9
        assert spurts[0][0] == 0.0 and spurts[-1][1] < 30.0  # ends in a pause


def test_very_short_signal_is_one_scaled_pair() -> None:
    [(start, end)] = talk_spurts(0.9)
    assert start == 0.0
    assert end == pytest.approx(0.6)


def _silent_frames(samples: array[int], rate: int) -> list[bool]:
    size = rate // 100  # 10 ms
    return [rms_dbov(samples[i : i + size]) < -60 for i in range(0, len(samples) - size + 1, size)]


@pytest.mark.parametrize(("rate", "seed"), [(8000, 0), (8000, 7), (16000, 3)])
def test_speech_like_pauses_level_and_no_clipping(rate: int, seed: int) -> None:
    duration = 8.0
    samples = speech_like(duration, rate, seed)
    assert len(samples) == duration * rate and samples.typecode == "h"
    silent = _silent_frames(samples, rate)
    ratio = sum(silent) / len(silent)
    low, high = SpeechConfig().silence_ratio_bounds
    assert low <= ratio <= high
    # The measured pauses are exactly the planned ones (to a 10 ms frame at each edge).
    spurts = talk_spurts(duration, seed)
    planned = 1 - sum(end - start for start, end in spurts) / duration
    assert ratio == pytest.approx(planned, abs=2 * 0.01 * len(spurts) / duration + 0.01)
    # Syllable dips inside a spurt are never counted as silence.
    for start, end in spurts:
        assert not any(silent[math.ceil(start * 100) : math.floor(end * 100)])
    active = array("h")
    for start, end in spurts:
        active.extend(samples[round(start * rate) : round(end * rate)])
    assert rms_dbov(active) == pytest.approx(-20.0, abs=0.05)
    assert max(abs(min(samples)), max(samples)) < 32767  # no clipping


def test_speech_like_is_deterministic_per_seed() -> None:
    first = speech_like(3.0, 8000, seed=1)
    assert speech_like(3.0, 8000, seed=1) == first
    assert speech_like(3.0, 8000, seed=2) != first


def test_speech_like_is_voiced_with_a_pitch_in_range() -> None:
    """Autocorrelation of a voiced frame peaks at a pitch period within the configured range."""
    rate = 8000
    samples = speech_like(4.0, rate, seed=0)
    start, end = talk_spurts(4.0, 0)[0]
    config = SpeechConfig()
    # The pitch contour spans base * (0.87 .. 1.12) * (1 .. 1.12) around the base range.
    shortest = int(rate / (config.pitch_hz[1] * 1.12 * 1.12))
    longest = int(rate / (config.pitch_hz[0] * 0.87)) + 1
    checked = 0
    for offset in range(int(start * rate) + 800, int(end * rate) - 800, 1600):
        frame = samples[offset : offset + 400]
        if rms_dbov(frame) < -28:  # 8 dB under the active level
            continue  # a dip between syllables, or a fricative
        energy = sum(x * x for x in frame)
        best = max(
            range(35, 111),  # 73-229 Hz: wider than the configured pitch, above F1's period
            key=lambda lag: sum(frame[i] * frame[i + lag] for i in range(400 - lag)),
        )
        peak = sum(frame[i] * frame[i + best] for i in range(400 - best))
        assert shortest <= best <= longest and peak > 0.3 * energy
        checked += 1
    assert checked >= 4


def test_speech_config_validation() -> None:
    with pytest.raises(ValueError, match="pause_s"):
        SpeechConfig(pause_s=(1.0, 0.5))
    assert SpeechConfig(talk_s=(1, 1), pause_s=(1, 1)).silence_ratio_bounds == (0.5, 0.5)
