"""ITU-T G.107 E-model: worked examples by hand and monotonicity properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.quality.emodel import (
    CODECS,
    basic_signal_to_noise,
    codec_impairment,
    delay_impairment,
    effective_equipment_impairment,
    mos_from_r,
    rate,
    simultaneous_impairment,
    transmission_rating,
)


def test_default_parameters_give_r_93_2() -> None:
    # Clause 7.2 with Table 3 defaults:
    #   Nfo = Nfor + RLR = -64 + 2 = -62
    #   Pre = Pr + 10 lg(1 + 10^((10 - LSTR)/10)) = 35 + 10 lg(1.158489) = 35.6389
    #   Nor = RLR - 121 + Pre + 0.008 (Pre - 35)^2 = -83.3611 + 0.0033 = -83.3578
    #   Nos = Ps - SLR - Ds - 100 + 0.004 (Ps - OLR - Ds - 14)^2 = -76 + 0.004 * 64 = -75.744
    #   No = 10 lg(10^-7 + 10^-7.5744 + 10^-8.3358 + 10^-6.2) = 10 lg(7.622e-7) = -61.18
    #   Ro = 15 - 1.5 (SLR + No) = 15 - 1.5 (8 - 61.18) = 94.77
    # Is = 1.41 (Iolr + Ist + Iq), Id = Idte 0 (T = 0) + Idle 0.15 + Idd 0 = 0.15
    # R = 94.77 - 1.41 - 0.15 - 0 + 0 = 93.2 ; MOS = 1 + 0.035 * 93.2 + 93.2 * 33.2 * 6.8 * 7e-6
    #   = 1 + 3.262 + 0.1473 = 4.41
    assert basic_signal_to_noise() == pytest.approx(94.77, abs=0.005)
    assert simultaneous_impairment() == pytest.approx(1.41, abs=0.005)
    assert delay_impairment(0.0) == pytest.approx(0.15, abs=0.005)
    rating = transmission_rating()
    assert round(rating.r, 1) == 93.2
    assert round(rating.mos, 2) == 4.41
    assert rating.ie_eff == 0.0


def test_g711_one_percent_random_loss_without_plc() -> None:
    # G.113: G.711 Ie = 0, Bpl = 4.3 without PLC; random loss BurstR = 1.
    # Ie,eff = 0 + (95 - 0) * 1 / (1/1 + 4.3) = 95 / 5.3 = 17.9245
    # R = 93.2062 - 17.9245 = 75.2817
    # MOS = 1 + 0.035 * 75.2817 + 75.2817 * 15.2817 * 24.7183 * 7e-6
    #     = 1 + 2.63486 + 0.19906 = 3.8339
    assert effective_equipment_impairment(0.0, 4.3, 1.0) == pytest.approx(17.9245, abs=1e-4)
    rating = rate("G711-noPLC", loss_pct=1.0, delay_ms=0.0)
    assert rating.r == pytest.approx(75.2817, abs=1e-3)
    assert rating.mos == pytest.approx(3.8339, abs=1e-3)


def test_g711_with_plc_one_percent_loss() -> None:
    # Bpl 25.1: Ie,eff = 95 / (1 + 25.1) = 3.6398; R = 93.2062 - 3.6398 = 89.5664.
    assert rate("PCMU", 1.0, 0.0).r == pytest.approx(89.5664, abs=1e-3)
    assert rate("pcma", 1.0, 0.0).r == rate("PCMU", 1.0, 0.0).r


def test_bursty_loss_hurts_more() -> None:
    # BurstR 2: Ie,eff = 95 * 2 / (2/2 + 4.3) = 35.8491 (vs 17.9245 random).
    assert effective_equipment_impairment(0.0, 4.3, 2.0, burst_r=2.0) == pytest.approx(
        35.8491, abs=1e-4
    )


def test_one_way_delay_150_ms() -> None:
    # Ta = T = 150 ms, Tr = 300 ms, all else default.
    # Idd: X = log2(150/100) = 0.58496; X^6 = 0.040065; (1 + X^6)^(1/6) = 1.006569;
    #      (X/3)^6 = 5.496e-5; (1 + (X/3)^6)^(1/6) = 1.0000092
    #      Idd = 25 (1.006569 - 3 * 1.0000092 + 2) = 0.16353
    # Idte: TERV = 65 - 40 lg((1 + 15)/(1 + 1)) + 6 e^(-6750) = 65 - 36.1236 = 28.8764
    #      Re = 80 + 2.5 (28.8764 - 14) = 117.1910; Roe = -1.5 (No - RLR) = 94.7688
    #      Idte = ((Roe - Re)/2 + sqrt((Roe - Re)^2/4 + 100) - 1) (1 - e^-150)
    #           = -11.2111 + 15.0229 - 1 = 2.81184
    # Idle: Rle = 10.5 (110 + 7) (300 + 1)^(-1/4) = 1228.5 / 4.16527 = 294.9399
    #      Idle = (94.7688 - 294.9399)/2 + sqrt(200.1711^2/4 + 169) = 0.84075
    # Id = 2.81184 + 0.84075 + 0.16353 = 3.81612; Is = 1.41357 (STMRo ~ STMR at T = 150)
    # R = 94.76882 - 1.41357 - 3.81612 = 89.5391; MOS = 1 + 3.13387 + 0.19368 = 4.3275
    assert delay_impairment(150.0) == pytest.approx(3.81612, abs=1e-4)
    rating = transmission_rating(delay_ms=150.0)
    assert rating.r == pytest.approx(89.5391, abs=1e-3)
    assert rating.mos == pytest.approx(4.3275, abs=1e-3)


def test_one_way_delay_300_ms() -> None:
    # X = log2(3) = 1.58496; X^6 = 15.8531; (1 + X^6)^(1/6) = 1.601204;
    # (X/3)^6 = 0.021746; (1 + (X/3)^6)^(1/6) = 1.003592
    # Idd = 25 (1.601204 - 3.010776 + 2) = 14.76069
    # TERV = 65 - 40 lg(31/3) = 24.4304; Re = 106.0760; Idte = 4.83394
    # Rle = 1228.5 / 601^(1/4) = 248.1170; Idle = 1.09426
    # R = 94.76882 - 1.41357 - (4.83394 + 1.09426 + 14.76069) = 72.6664
    # MOS = 1 + 2.54332 + 72.6664 * 12.6664 * 27.3336 * 7e-6 = 3.7194
    rating = transmission_rating(delay_ms=300.0)
    assert rating.r == pytest.approx(72.6664, abs=1e-3)
    assert rating.mos == pytest.approx(3.7194, abs=1e-3)


def test_idd_is_zero_up_to_100_ms() -> None:
    # Only Idte and Idle change below mT = 100 ms: Idd adds nothing at 100 ms exactly.
    at_100 = delay_impairment(100.0)
    just_over = delay_impairment(100.001)
    assert just_over - at_100 == pytest.approx(0.0, abs=1e-3)


def test_mos_from_r_annex_b() -> None:
    assert mos_from_r(-5.0) == 1.0
    assert mos_from_r(0.0) == 1.0
    assert mos_from_r(3.0) == 1.0  # the cubic gives 0.989 here: clamped
    # R = 50: 1 + 1.75 + 50 * (-10) * 50 * 7e-6 = 2.75 - 0.175 = 2.575
    assert mos_from_r(50.0) == pytest.approx(2.575)
    # R = 80: 1 + 2.8 + 80 * 20 * 20 * 7e-6 = 3.8 + 0.224 = 4.024
    assert mos_from_r(80.0) == pytest.approx(4.024)
    assert mos_from_r(100.0) == 4.5
    assert mos_from_r(120.0) == 4.5


def test_codec_table_and_lookup() -> None:
    assert codec_impairment("PCMU") is CODECS["G711"]
    assert (CODECS["G711"].ie, CODECS["G711"].bpl) == (0.0, 25.1)
    assert (CODECS["G711-NOPLC"].ie, CODECS["G711-NOPLC"].bpl) == (0.0, 4.3)
    assert codec_impairment("opus").provisional and codec_impairment("G722").provisional
    with pytest.raises(ValueError):
        codec_impairment("AMR")


def test_three_percent_random_loss_with_and_without_concealment() -> None:
    """The assumption the report names (issue 12, item 6): G.711 at 3 % random loss, Ta 0.

    G.107 clause 7.5, Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl), BurstR 1, and the
    default R without impairment 93.20620 (Ro 94.76882 - Is 1.41357 - Id 0.14905, above):
      with PLC (G.113: Bpl 25.1): Ie,eff = 95 * 3 / 28.1 = 10.14235, R = 83.06385,
        MOS = 1 + 0.035 R + R (R - 60) (100 - R) 7e-6 = 1 + 2.90723 + 0.22712 = 4.1344
      without (Bpl 4.3): Ie,eff = 95 * 3 / 7.3 = 39.04110, R = 54.16510,
        MOS = 1 + 1.89578 - 0.10140 = 2.7944
    """
    concealed = rate("PCMU", 3.0, 0.0)
    assert concealed.ie_eff == pytest.approx(10.14235, abs=1e-4)
    assert concealed.r == pytest.approx(83.06385, abs=1e-3)
    assert concealed.mos == pytest.approx(4.1344, abs=1e-3)
    silent = rate("PCMU", 3.0, 0.0, plc=False)
    assert silent.ie_eff == pytest.approx(39.04110, abs=1e-4)
    assert silent.r == pytest.approx(54.16510, abs=1e-3)
    assert silent.mos == pytest.approx(2.7944, abs=1e-3)


def test_g729_two_percent_loss_at_150_ms() -> None:
    """G.113 App. I, G.729A + VAD: Ie 11, Bpl 19.0; Ta 150 ms (Id 3.81612, Is 1.41357 as in
    test_one_way_delay_150_ms, so R before Ie,eff = 89.53913).

    Ie,eff = 11 + (95 - 11) * 2 / (2 + 19) = 11 + 168 / 21 = 19.0; R = 70.53913;
    MOS = 1 + 0.035 * 70.53913 + 70.53913 * 10.53913 * 29.46087 * 7e-6
        = 1 + 2.46887 + 0.15331 = 3.6222.
    Its concealment is the codec's own: the same without PLC.
    """
    rating = rate("G729", 2.0, 150.0)
    assert rating.ie_eff == pytest.approx(19.0, abs=1e-9)
    assert rating.r == pytest.approx(70.53913, abs=1e-3)
    assert rating.mos == pytest.approx(3.6222, abs=1e-3)
    assert rate("G.729", 2.0, 150.0, plc=False) == rating


def test_the_values_used_are_named_with_their_assumption() -> None:
    assert codec_impairment("PCMA", plc=False) is CODECS["G711-NOPLC"]
    assert codec_impairment("PCMU").as_dict() == {
        "ie": 0.0,
        "bpl": 25.1,
        "plc": True,
        "source": "G.113 App. I: G.711 with App. I PLC",
        "provisional": False,
    }
    no_plc = codec_impairment("PCMU", plc=False).as_dict()
    assert (no_plc["ie"], no_plc["bpl"], no_plc["plc"]) == (0.0, 4.3, False)
    for codec in ("G722", "opus"):
        values = codec_impairment(codec, plc=False)
        assert (values.bpl, values.plc, values.provisional) == (4.3, False, True)
    g729 = codec_impairment("G729", plc=False)
    assert (g729.ie, g729.bpl, g729.plc) == (11.0, 19.0, True)
    assert codec_impairment("G711-NOPLC", plc=True).bpl == 4.3  # an explicit key wins


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        effective_equipment_impairment(0.0, 4.3, 101.0)
    with pytest.raises(ValueError):
        effective_equipment_impairment(0.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        delay_impairment(-1.0)


losses = st.floats(0.0, 100.0)
# G.107's Idte is slightly negative for T under about 1 ms (R peaks at 93.26 near
# T = 0.9 ms), a property of the formula itself; real mouth-to-ear delays include at least
# one packetization interval, so monotonicity is checked from 1 ms.
delays = st.floats(1.0, 1000.0)


@given(losses, losses, delays, st.sampled_from(sorted(CODECS)))
def test_more_loss_never_raises_r(a: float, b: float, delay: float, codec: str) -> None:
    low, high = sorted((a, b))
    assert rate(codec, high, delay).r <= rate(codec, low, delay).r + 1e-9


@given(delays, delays, losses)
def test_more_delay_never_raises_r(a: float, b: float, loss: float) -> None:
    short, long = sorted((a, b))
    assert rate("PCMU", loss, long).r <= rate("PCMU", loss, short).r + 1e-9


@given(st.floats(-50.0, 150.0), st.floats(-50.0, 150.0))
def test_mos_is_monotonic_and_bounded(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert 1.0 <= mos_from_r(low) <= mos_from_r(high) + 1e-12 <= 4.5 + 1e-12
