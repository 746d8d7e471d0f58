"""ITU-T G.107 (06/2015) E-model: transmission rating R and MOS for a voice stream.

R = Ro - Is - Id - Ie,eff + A (G.107 clause 7.1), computed with the G.107 Table 3 default
value of every parameter except three, which come from the measured stream:

* the mean one-way mouth-to-ear delay Ta (ms), with the default relations T = Ta and
  Tr = 2 Ta, which moves Id (Idte, Idle, Idd of clause 7.4) and, slightly, Is (STMRo);
* the codec's equipment impairment Ie and packet-loss robustness Bpl (ITU-T G.113
  Appendix I, :data:`CODECS`);
* the packet loss Ppl (percent) and its burst ratio BurstR (1 for random loss), giving
  Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl) (clause 7.5).

With every default, R = 93.2 (Ro 94.77, Is 1.41, Id 0.15). The full formulas of clauses
7.2 to 7.4 are implemented (not a fitted approximation), so Idd is G.107's exact
piecewise form: 0 for Ta <= 100 ms, else 25 ((1 + X^6)^(1/6) - 3 (1 + (X/3)^6)^(1/6) + 2)
with X = log2(Ta / 100) (mT = 100 ms, sT = 1 by default).

MOS from R per G.107 Annex B: 1 + 0.035 R + R (R - 60) (100 - R) 7e-6 for 0 < R < 100,
then clamped to 1..4.5 (the cubic dips just under 1 for R < 6.5).

The E-model is a narrowband (300-3400 Hz) planning model; G.722 and Opus are rated on
that narrowband scale (see :data:`CODECS`), not with the wideband G.107.1 model.

Packet-loss concealment is an assumption about the receiving endpoint, and it moves the
MOS a lot: at 3 % random loss G.711 rates R 83.1, MOS 4.13 with concealment (Bpl 25.1)
and R 54.2, MOS 2.79 without (Bpl 4.3), at Ta 0. :func:`rate` takes it as ``plc`` (a plan's
``emodel.plc``), and :func:`codec_impairment` names the Ie and Bpl used, for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CODECS",
    "CodecImpairment",
    "EModelParameters",
    "Rating",
    "basic_signal_to_noise",
    "codec_impairment",
    "delay_impairment",
    "effective_equipment_impairment",
    "mos_from_r",
    "rate",
    "simultaneous_impairment",
    "transmission_rating",
]


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    """Ie and Bpl of a codec (ITU-T G.113 Appendix I), with where the values come from."""

    name: str
    ie: float
    bpl: float
    source: str
    provisional: bool = False
    plc: bool = True  # the Bpl assumes the receiver conceals lost packets

    def as_dict(self) -> dict[str, float | bool | str]:
        """What the report says about the values used: ie, bpl, plc, source, provisional."""
        return {
            "ie": self.ie,
            "bpl": self.bpl,
            "plc": self.plc,
            "source": self.source,
            "provisional": self.provisional,
        }


#: Codec impairment values, keyed by an upper-case name; "-NOPLC" keys are the values for a
#: receiver that does not conceal lost packets (it plays silence), chosen by ``plc=False``.
#:
#: * G.711 (PCMU, PCMA): Ie 0 (G.113 Table I.1). Bpl 25.1 with the packet loss
#:   concealment of G.711 Appendix I, 4.3 without (G.113 Table I.3, random loss). Endpoints
#:   in practice conceal loss, so PCMU/PCMA map to the PLC value by default; "G711-NOPLC"
#:   is there for a receiver known to play silence.
#: * G.729 (G.729A with VAD): Ie 11, Bpl 19.0 (G.113 Table I.3). Its decoder's frame
#:   erasure concealment is part of the codec, so there is no value without PLC: the same
#:   values for ``plc=False``.
#: * G.722 at 64 kbit/s: on the narrowband scale of G.107 a 7 kHz codec is no worse than
#:   G.711, so Ie 0. G.113's G.722 figures (Ie,wb 13 and its Bpl) belong to the wideband
#:   scale of G.107.1 and cannot be mixed into this narrowband R. No narrowband Bpl for G.722
#:   could be verified, so the G.711 with-PLC value 25.1 is used: G.722 Appendices III/IV
#:   define PLCs at least as good as G.711 Appendix I. Provisional.
#: * Opus: not in G.113's narrowband tables. At VoIP bit rates (>= 16 kbit/s) it is
#:   transparent on a narrowband scale (Ie 0) and has built-in PLC, so the same 25.1 is
#:   used. Provisional.
#: * G.722 and Opus without PLC: a receiver that plays silence for a lost packet is no
#:   better than G.711 doing the same, so G.711's 4.3. Provisional.
CODECS: dict[str, CodecImpairment] = {
    "G711": CodecImpairment("G711", 0.0, 25.1, "G.113 App. I: G.711 with App. I PLC"),
    "G711-NOPLC": CodecImpairment(
        "G711-NOPLC", 0.0, 4.3, "G.113 App. I: G.711 without PLC", plc=False
    ),
    "G722": CodecImpairment(
        "G722", 0.0, 25.1, "narrowband scale: Ie as G.711, Bpl as G.711+PLC", True
    ),
    "G722-NOPLC": CodecImpairment(
        "G722-NOPLC", 0.0, 4.3, "narrowband scale: as G.711 without PLC", True, plc=False
    ),
    "OPUS": CodecImpairment("OPUS", 0.0, 25.1, "not in G.113: Ie as G.711, Bpl as G.711+PLC", True),
    "OPUS-NOPLC": CodecImpairment(
        "OPUS-NOPLC", 0.0, 4.3, "not in G.113: as G.711 without PLC", True, plc=False
    ),
    "G729": CodecImpairment(
        "G729", 11.0, 19.0, "G.113 App. I: G.729A + VAD (its own frame erasure concealment)"
    ),
}
_ALIASES = {
    "PCMU": "G711",
    "PCMA": "G711",
    "G.711": "G711",
    "G.722": "G722",
    "G.729": "G729",
    "G729A": "G729",
}


def codec_impairment(name: str, plc: bool = True) -> CodecImpairment:
    """Ie/Bpl for an SDP encoding name (PCMU, PCMA, G722, opus, G729) or a :data:`CODECS`
    key; ``plc=False``: the values for a receiver that does not conceal lost packets."""
    key = name.upper()
    key = _ALIASES.get(key, key)
    if not plc and not key.endswith("-NOPLC") and f"{key}-NOPLC" in CODECS:
        key = f"{key}-NOPLC"
    try:
        return CODECS[key]
    except KeyError:
        raise ValueError(f"no E-model values for codec {name!r}") from None


@dataclass(frozen=True, slots=True)
class EModelParameters:
    """G.107 Table 3 parameters; every default is G.107's default value."""

    slr: float = 8.0  # send loudness rating, dB
    rlr: float = 2.0  # receive loudness rating, dB
    stmr: float = 15.0  # sidetone masking rating, dB
    lstr: float = 18.0  # listener sidetone rating, dB
    ds: float = 3.0  # D-value of telephone, send side
    dr: float = 3.0  # D-value of telephone, receive side
    telr: float = 65.0  # talker echo loudness rating, dB
    wepl: float = 110.0  # weighted echo path loss, dB
    qdu: float = 1.0  # number of quantization distortion units
    nc: float = -70.0  # circuit noise referred to the 0 dBr point, dBm0p
    nfor: float = -64.0  # noise floor at the receive side, dBmp
    ps: float = 35.0  # room noise at the send side, dB(A)
    pr: float = 35.0  # room noise at the receive side, dB(A)
    advantage: float = 0.0  # advantage factor A
    mt: float = 100.0  # minimum perceivable delay mT, ms
    st: float = 1.0  # delay sensitivity sT


_DEFAULTS = EModelParameters()


@dataclass(frozen=True, slots=True)
class Rating:
    """An E-model result: R and its parts, and the MOS."""

    r: float
    mos: float
    ro: float
    is_: float
    id_: float
    ie_eff: float


def _noise(p: EModelParameters) -> float:
    """No, the power addition of all noise sources, dBm0p (clause 7.2)."""
    olr = p.slr + p.rlr
    nfo = p.nfor + p.rlr
    pre = p.pr + 10 * math.log10(1 + 10 ** ((10 - p.lstr) / 10))
    nor = p.rlr - 121 + pre + 0.008 * (pre - 35) ** 2
    nos = p.ps - p.slr - p.ds - 100 + 0.004 * (p.ps - olr - p.ds - 14) ** 2
    return 10 * math.log10(
        10 ** (p.nc / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10)
    )


#: No of the default parameters: every stream's rating needs it three times (bench: a third
#: of a rating's time went to recomputing it).
_DEFAULT_NOISE = _noise(_DEFAULTS)


def _noise_of(p: EModelParameters) -> float:
    return _DEFAULT_NOISE if p is _DEFAULTS else _noise(p)


def basic_signal_to_noise(p: EModelParameters = _DEFAULTS) -> float:
    """Ro = 15 - 1.5 (SLR + No) (clause 7.2)."""
    return 15 - 1.5 * (p.slr + _noise_of(p))


def _ist(p: EModelParameters, t: float) -> float:
    """Ist, the sidetone impairment, with STMRo for an echo path delay T (clause 7.3)."""
    stmro = -10 * math.log10(10 ** (-p.stmr / 10) + math.exp(-t / 4) * 10 ** (-p.telr / 10))
    return float(
        12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
        - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
        - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13)
        + 29
    )


def simultaneous_impairment(t: float = 0.0, p: EModelParameters = _DEFAULTS) -> float:
    """Is = Iolr + Ist + Iq (clause 7.3), for a mean one-way echo path delay T in ms."""
    no = _noise_of(p)
    ro = 15 - 1.5 * (p.slr + no)
    xolr = p.slr + p.rlr + 0.2 * (64 + no - p.rlr)
    iolr = float(20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8))
    q = 37 - 15 * math.log10(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * math.log10(1 + 10**y + 10**z)
    return iolr + _ist(p, t) + iq


def delay_impairment(
    ta: float, t: float | None = None, tr: float | None = None, p: EModelParameters = _DEFAULTS
) -> float:
    """Id = Idte + Idle + Idd (clause 7.4), delays in ms; T = Ta and Tr = 2 T by default."""
    if ta < 0:
        raise ValueError(f"delay {ta} ms is negative")
    t = ta if t is None else t
    tr = 2 * t if tr is None else tr
    no = _noise_of(p)
    ro = 15 - 1.5 * (p.slr + no)
    # Talker echo, Idte.
    terv = p.telr - 40 * math.log10((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t * t)
    ist = _ist(p, t)
    if p.stmr < 9:
        terv += ist / 2
    roe = -1.5 * (no - p.rlr)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-t))
    if p.stmr > 20:
        idte = math.sqrt(idte * idte + ist * ist)
    # Listener echo, Idle.
    rle = 10.5 * (p.wepl + 7) * math.pow(tr + 1, -0.25)
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    # Too-long absolute delay, Idd.
    idd = 0.0
    if ta > p.mt:
        x = math.log2(ta / p.mt)
        k = 6 * p.st
        idd = float(25 * ((1 + x**k) ** (1 / k) - 3 * (1 + (x / 3) ** k) ** (1 / k) + 2))
    return idte + idle + idd


def effective_equipment_impairment(
    ie: float, bpl: float, ppl: float, burst_r: float = 1.0
) -> float:
    """Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl) (clause 7.5), Ppl in percent."""
    if not 0 <= ppl <= 100:
        raise ValueError(f"packet loss {ppl}% not in 0..100")
    if burst_r <= 0 or bpl <= 0:
        raise ValueError("BurstR and Bpl must be positive")
    return ie + (95 - ie) * ppl / (ppl / burst_r + bpl)


def mos_from_r(r: float) -> float:
    """MOS (conversational quality estimate) from R, G.107 Annex B, clamped to 1..4.5."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    mos = 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6
    return min(4.5, max(1.0, mos))


def transmission_rating(
    delay_ms: float = 0.0,
    ie: float = 0.0,
    bpl: float = 4.3,
    ppl: float = 0.0,
    burst_r: float = 1.0,
    p: EModelParameters = _DEFAULTS,
) -> Rating:
    """R = Ro - Is - Id - Ie,eff + A (clause 7.1), with the MOS of Annex B.

    ``delay_ms`` is the mean one-way mouth-to-ear delay Ta (T = Ta, Tr = 2 Ta); ``bpl``
    defaults to G.107's 4.3.
    """
    ro = basic_signal_to_noise(p)
    is_ = simultaneous_impairment(delay_ms, p)
    id_ = delay_impairment(delay_ms, p=p)
    ie_eff = effective_equipment_impairment(ie, bpl, ppl, burst_r)
    r = ro - is_ - id_ - ie_eff + p.advantage
    return Rating(r=r, mos=mos_from_r(r), ro=ro, is_=is_, id_=id_, ie_eff=ie_eff)


def rate(
    codec: str, loss_pct: float, delay_ms: float, burst_r: float = 1.0, plc: bool = True
) -> Rating:
    """R and MOS of a stream: codec name (PCMU, G722, opus ...), loss %, one-way delay.

    ``delay_ms`` should be the mouth-to-ear estimate (for instance RTT / 2 plus
    packetization and jitter-buffer delay); the caller decides how to build it. ``plc``:
    whether the receiver conceals lost packets (:func:`codec_impairment`).
    """
    codec_values = codec_impairment(codec, plc)
    return transmission_rating(
        delay_ms=delay_ms,
        ie=codec_values.ie,
        bpl=codec_values.bpl,
        ppl=loss_pct,
        burst_r=burst_r,
    )
