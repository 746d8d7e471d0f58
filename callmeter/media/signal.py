"""Default audio when a test has no media file: a test tone and a speech-like signal.

Both are 16-bit PCM (``array('h')``) at any sample rate from 8000 Hz (8000 and 16000 are the
ones in use), deterministic, pure Python, generated once per test and then looped.

Levels are in dBov: ``20 log10(rms / 32768)``, 0 dBov being a full-scale square wave and a
full-scale sine -3.01 dBov (ITU-T P.56 / G.191 convention). G.711 puts a full-scale sine at
+3.17 dBm0 (mu-law's theoretical load capacity; A-law's is +3.14), so 0 dBm0 is about
-6.18 dBov: :func:`dbm0_to_dbov`.

- :func:`tone`: a sine, by default 1004 Hz at -16 dBm0 (1004 Hz rather than 1000 Hz, as
  telephony test tones do, so the tone is not a sub-multiple of the 8 kHz sampling rate;
  1004 whole cycles a second, so a whole-second tone loops without a click).
- :func:`speech_like`: an artificial voice in the spirit of ITU-T P.50 (not a conforming
  P.50 signal): talk spurts of 1-2 s separated by 0.5-1 s of digital silence, each spurt a
  string of syllables; a syllable is an optional fricative (noise through a high resonator)
  then a vowel: an impulse train at the pitch period (the harmonic series of the pitch),
  low-passed like a glottal pulse and shaped by three formant resonators (Klatt-style
  second-order sections, vowel formants after Peterson and Barney), under a rise/decay
  envelope. The pitch follows a declining contour over the spurt with a small accent per
  syllable. The active level (RMS over the talk spurts, an approximation of P.56's active
  speech level) is -20 dBov by default. The signal ends in a pause so it loops cleanly.
"""

from __future__ import annotations

import itertools
import math
import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DBOV_AT_0_DBM0",
    "DEFAULT_TONE_HZ",
    "DEFAULT_TONE_LEVEL_DBOV",
    "FULL_SCALE",
    "SpeechConfig",
    "dbm0_to_dbov",
    "rms_dbov",
    "speech_like",
    "talk_spurts",
    "tone",
]

FULL_SCALE = 32768.0
#: Level of a 0 dBm0 sine in dBov (mu-law: full-scale sine = +3.17 dBm0 = -3.01 dBov).
DBOV_AT_0_DBM0 = -3.01 - 3.17
DEFAULT_TONE_HZ = 1004.0


def dbm0_to_dbov(level_dbm0: float) -> float:
    """A G.711 level in dBm0 as dBov (mu-law; A-law differs by 0.03 dB)."""
    return level_dbm0 + DBOV_AT_0_DBM0


DEFAULT_TONE_LEVEL_DBOV = dbm0_to_dbov(-16.0)


def rms_dbov(samples: Sequence[int] | array[int]) -> float:
    """RMS level of 16-bit samples in dBov; ``-inf`` for digital silence or no samples."""
    if not samples:
        return -math.inf
    energy = math.fsum(s * s for s in samples) / len(samples)
    return 10 * math.log10(energy / FULL_SCALE**2) if energy else -math.inf


def _check_rate(sample_rate: int) -> None:
    if sample_rate < 8000:
        raise ValueError(f"sample rate must be at least 8000 Hz, got {sample_rate}")


def _amplitude(level_dbov: float) -> float:
    """RMS amplitude for a level in dBov."""
    return FULL_SCALE * 10 ** (level_dbov / 20)


def _to_pcm(values: Sequence[float], scale: float) -> array[int]:
    return array("h", [max(-32768, min(32767, round(v * scale))) for v in values])


def tone(
    duration_s: float = 1.0,
    sample_rate: int = 8000,
    frequency_hz: float = DEFAULT_TONE_HZ,
    level_dbov: float = DEFAULT_TONE_LEVEL_DBOV,
) -> array[int]:
    """A sine of ``frequency_hz`` at ``level_dbov`` (RMS), starting at phase 0."""
    _check_rate(sample_rate)
    if not 0 < frequency_hz < sample_rate / 2:
        raise ValueError(f"tone frequency must be in (0, {sample_rate / 2}) Hz, got {frequency_hz}")
    peak = _amplitude(level_dbov) * math.sqrt(2)
    if peak > 32767:
        raise ValueError(f"a sine at {level_dbov} dBov clips (the maximum is -3.01 dBov)")
    step = 2 * math.pi * frequency_hz / sample_rate
    n = round(duration_s * sample_rate)
    sin = math.sin
    return array("h", [round(peak * sin(step * i)) for i in range(n)])


@dataclass(frozen=True)
class SpeechConfig:
    """Timing and level of :func:`speech_like`; ranges are (min, max) in seconds or Hz."""

    talk_s: tuple[float, float] = (1.0, 2.0)
    pause_s: tuple[float, float] = (0.5, 1.0)
    syllable_s: tuple[float, float] = (0.12, 0.26)
    pitch_hz: tuple[float, float] = (95.0, 150.0)
    level_dbov: float = -20.0
    fricative_probability: float = 0.35

    def __post_init__(self) -> None:
        for name in ("talk_s", "pause_s", "syllable_s", "pitch_hz"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(
                    f"{name} must be (min, max) with 0 < min <= max, got {(low, high)}"
                )

    @property
    def silence_ratio_bounds(self) -> tuple[float, float]:
        """The fraction of time in pauses is always within these bounds."""
        (t_min, t_max), (p_min, p_max) = self.talk_s, self.pause_s
        return p_min / (p_min + t_max), p_max / (p_max + t_min)


def _pair_totals(duration_s: float, rng: random.Random, config: SpeechConfig) -> list[float]:
    """Lengths of (talk + pause) pairs, each within bounds, summing to ``duration_s``."""
    low = config.talk_s[0] + config.pause_s[0]
    high = config.talk_s[1] + config.pause_s[1]
    fewest = max(1, math.ceil(duration_s / high))
    most = math.floor(duration_s / low)
    if most < fewest:  # too short for whole pairs in bounds: one pair, scaled
        return [duration_s]
    count = min(max(round(duration_s / ((low + high) / 2)), fewest), most)
    # Draw u_i in [0, 1] and rescale so that sum(low + (high - low) * u_i) == duration_s,
    # clipping to [0, 1] and spreading the excess over the others until it fits.
    target = (duration_s - count * low) / (high - low)
    u = [rng.random() for _ in range(count)]
    for _ in range(50):
        total = sum(u)
        if abs(total - target) < 1e-12:
            break
        free = [i for i in range(count) if (u[i] < 1 if total < target else u[i] > 0)]
        share = (target - total) / len(free)
        for i in free:
            u[i] = min(1.0, max(0.0, u[i] + share))
    return [low + (high - low) * x for x in u]


def talk_spurts(
    duration_s: float, seed: int = 0, config: SpeechConfig | None = None
) -> list[tuple[float, float]]:
    """(start, end) of each talk spurt in seconds; pauses fill the rest, ending the signal."""
    config = config or SpeechConfig()
    rng = random.Random(f"talk-spurts:{seed}")
    (t_min, t_max), (p_min, p_max) = config.talk_s, config.pause_s
    spurts = []
    start = 0.0
    for total in _pair_totals(duration_s, rng, config):
        low, high = max(t_min, total - p_max), min(t_max, total - p_min)
        if low > high:  # the scaled single pair: keep the mid ratio
            talk = total * (t_min + t_max) / (t_min + t_max + p_min + p_max)
        else:
            talk = rng.uniform(low, high)
        spurts.append((start, start + talk))
        start += total
    return spurts


# Vowel formants F1, F2, F3 in Hz (Peterson and Barney 1952, adult male averages).
_VOWELS = (
    (730, 1090, 2440),  # a
    (270, 2290, 3010),  # i
    (300, 870, 2240),  # u
    (530, 1840, 2480),  # e
    (570, 840, 2410),  # o
    (660, 1720, 2410),  # ae
    (490, 1350, 1690),  # er
)
_BANDWIDTHS = (80.0, 100.0, 150.0)


def _resonator(frequency: float, bandwidth: float, rate: int) -> tuple[float, float, float]:
    """Klatt resonator y = a x + b y1 + c y2 with unity gain at 0 Hz."""
    c = -math.exp(-2 * math.pi * bandwidth / rate)
    b = 2 * math.exp(-math.pi * bandwidth / rate) * math.cos(2 * math.pi * frequency / rate)
    return 1 - b - c, b, c


def _syllables(n0: int, n1: int, rng: random.Random, rate: int, config: SpeechConfig) -> list[int]:
    """Syllable boundaries (sample indices) from n0 to n1."""
    low, high = (round(s * rate) for s in config.syllable_s)
    bounds = [n0]
    while n1 - bounds[-1] > high + low:
        bounds.append(bounds[-1] + rng.randint(low, high))
    bounds.append(n1)
    return bounds


def _render_spurt(
    out: list[float], n0: int, n1: int, rng: random.Random, rate: int, config: SpeechConfig
) -> None:
    base_f0 = rng.uniform(*config.pitch_hz)
    length = n1 - n0
    phase = 0.0
    glottal = 0.0
    y = [0.0] * 6  # three resonators, two past outputs each
    bounds = _syllables(n0, n1, rng, rate, config)
    noise_res = _resonator(min(3500.0, 0.42 * rate), 1200.0, rate)
    for s0, s1 in itertools.pairwise(bounds):
        f1, f2, f3 = rng.choice(_VOWELS)
        (a1, b1, c1), (a2, b2, c2), (a3, b3, c3) = (
            _resonator(f, bw, rate) for f, bw in zip((f1, f2, f3), _BANDWIDTHS, strict=True)
        )
        n = s1 - s0
        fricative = 0
        if rng.random() < config.fricative_probability:
            fricative = min(round(rng.uniform(0.03, 0.07) * rate), n // 3)
        attack = max(1, (n - fricative) // 4)
        decay = max(1, (n - fricative) * 2 // 5)
        accent = rng.uniform(0.0, 0.12)
        energy = 0.0
        y1, y2, y3, y4, y5, y6 = y
        for k in range(fricative, n):
            i = s0 + k
            position = k - fricative
            progress = (i - n0) / length
            syllable = position / (n - fricative)
            f0 = base_f0 * (1.12 - 0.25 * progress) * (1 + accent * math.sin(math.pi * syllable))
            phase += f0 / rate
            if phase >= 1.0:
                phase -= 1.0
                glottal = 0.92 * glottal + 1.0
            else:
                glottal = 0.92 * glottal
            x = a1 * glottal + b1 * y1 + c1 * y2
            y2, y1 = y1, x
            x = a2 * x + b2 * y3 + c2 * y4
            y4, y3 = y3, x
            x = a3 * x + b3 * y5 + c3 * y6
            y6, y5 = y5, x
            if position < attack:
                gain = 0.05 + 0.95 * 0.5 * (1 - math.cos(math.pi * position / attack))
            elif n - k <= decay:
                gain = 0.05 + 0.95 * 0.5 * (1 - math.cos(math.pi * (n - k) / decay))
            else:
                gain = 1.0
            x *= gain
            out[i] = x
            energy += x * x
        y = [y1, y2, y3, y4, y5, y6]
        if fricative:
            # Noise about 10 dB below the vowel that follows, rising then falling.
            vowel_rms = math.sqrt(energy / max(1, n - fricative))
            a, b, c = noise_res
            z1 = z2 = 0.0
            raw = []
            for _ in range(fricative):
                z = a * rng.uniform(-1.0, 1.0) + b * z1 + c * z2
                z2, z1 = z1, z
                raw.append(z)
            noise_rms = math.sqrt(math.fsum(v * v for v in raw) / fricative) or 1.0
            scale = 0.3 * vowel_rms / noise_rms
            for k, v in enumerate(raw):
                out[s0 + k] = v * scale * math.sin(math.pi * (k + 0.5) / fricative)


def speech_like(
    duration_s: float = 10.0,
    sample_rate: int = 8000,
    seed: int = 0,
    config: SpeechConfig | None = None,
) -> array[int]:
    """A deterministic speech-like signal (see the module docstring) as 16-bit PCM."""
    _check_rate(sample_rate)
    config = config or SpeechConfig()
    n = round(duration_s * sample_rate)
    out = [0.0] * n
    rng = random.Random(f"speech:{seed}:{sample_rate}")
    spans = [
        (round(start * sample_rate), round(end * sample_rate))
        for start, end in talk_spurts(duration_s, seed, config)
    ]
    for n0, n1 in spans:
        if n1 - n0 > 1:
            _render_spurt(out, n0, n1, rng, sample_rate, config)
    active = sum(n1 - n0 for n0, n1 in spans)
    energy = math.fsum(v * v for n0, n1 in spans for v in out[n0:n1])
    if not energy:
        return array("h", bytes(2 * n))
    scale = _amplitude(config.level_dbov) / math.sqrt(energy / active)
    return _to_pcm(out, scale)
