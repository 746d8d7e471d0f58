"""Tests for callmeter.sip.sdp: RFC 4566 parsing and RFC 3264 offer/answer."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.sip.sdp import (
    CODECS,
    MAX_SDP_SIZE,
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    MediaOffer,
    NegotiatedStream,
    Origin,
    Rtcp,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    build_answer,
    build_offer,
    codec,
    negotiated,
    parse_sdp,
    serialize_sdp,
)


def sdp(*lines: str) -> str:
    return "\r\n".join(lines) + "\r\n"


# An RFC 4566 section 5 style description, written for these tests.
FULL = sdp(
    "v=0",
    "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
    "s=SDP Seminar",
    "i=A Seminar on the session description protocol",
    "u=http://www.example.com/seminars/sdp.pdf",
    "e=j.doe@example.com (Jane Doe)",
    "p=+1 617 555-6011",
    "c=IN IP4 224.2.17.12/127",
    "b=CT:128",
    "t=2873397496 2873404696",
    "r=7d 1h 0 25h",
    "z=2882844526 -1h 2898848070 0",
    "x=an unknown line",
    "a=recvonly",
    "m=audio 49170 RTP/AVP 0 101",
    "i=the audio",
    "b=AS:64",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20.0",
    "a=maxptime:40",
    "a=rtcp:53020 IN IP6 2001:db8::1",
    "a=x-vendor:anything goes here",
    "m=video 51372/2 RTP/AVP 99",
    "c=IN IP6 2001:db8::2",
    "k=prompt",
    "y=media level unknown",
    "a=rtpmap:99 h263-1998/90000",
    "a=sendonly",
)


def test_parse_full_description() -> None:
    sd = parse_sdp(FULL)
    assert sd.origin == Origin("jdoe", 2890844526, 2890842807, "IN", "IP4", "10.47.16.5")
    assert sd.session_name == "SDP Seminar"
    assert sd.emails == ("j.doe@example.com (Jane Doe)",)
    assert sd.phones == ("+1 617 555-6011",)
    assert sd.connection == Connection("224.2.17.12/127")
    assert sd.timings == (Timing(2873397496, 2873404696, ("7d 1h 0 25h",)),)
    assert sd.zone == "2882844526 -1h 2898848070 0"
    assert sd.extra_lines == (("x", "an unknown line"),)
    assert sd.direction is Direction.RECVONLY
    audio, video = sd.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ("0", "101"),
    )
    assert audio.rtpmaps == {
        101: RtpMap(101, "telephone-event", 8000),
        0: RtpMap(0, "PCMU", 8000, 1),  # static, no rtpmap line needed
    }
    assert audio.fmtp(101) == "0-15"
    assert audio.fmtp("0") is None
    assert audio.ptime == 20
    assert audio.maxptime == 40
    assert audio.rtcp == Rtcp(53020, Connection("2001:db8::1", "IP6"))
    assert audio.attribute("x-vendor") == "anything goes here"
    assert audio.direction is None
    assert sd.media_direction(0) is Direction.RECVONLY  # inherited from the session level
    assert video.port_count == 2
    assert video.connection == Connection("2001:db8::2", "IP6")
    assert sd.media_connection(0) == sd.connection
    assert video.key == "prompt"
    assert video.extra_lines == (("y", "media level unknown"),)
    assert sd.media_direction(1) is Direction.SENDONLY
    assert parse_sdp(serialize_sdp(sd)) == sd
    assert parse_sdp(sd.to_bytes()) == sd


def test_lf_line_ends_blank_lines_and_bytes() -> None:
    text = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nt=0 0\n\nm=audio 5004 RTP/AVP 8\n\n"
    sd = parse_sdp(text.encode())
    assert sd.media[0].rtpmaps[8].encoding == "PCMA"
    assert serialize_sdp(sd).count("\r\n") == 5


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (sdp("o=- 1 1 IN IP4 h", "s=-", "t=0 0"), "first line must be v="),
        (sdp("v=1", "o=- 1 1 IN IP4 h", "s=-", "t=0 0"), "version"),
        (sdp("v=0", "o=- 1 IN IP4 h", "s=-", "t=0 0"), "o= needs 6 fields"),
        (sdp("v=0", "o=- x 1 IN IP4 h", "s=-", "t=0 0"), "session id must be a number"),
        (sdp("v=0", "s=-", "t=0 0"), "missing o="),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "t=0 0"), "missing s="),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-"), "missing t="),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "s=again", "t=0 0"), "s= appears twice"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "r=1d", "t=0 0"), "r= before any t="),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "garbage"), "line 5: expected"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "A=b"), "expected <type>=<value>"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP4", "t=0 0"), "c= needs 3 fields"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 70000 RTP/AVP 0"), "above"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 5004 RTP/AVP"), "m= needs"),
        (
            sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 1 RTP/AVP 0", "s=x"),
            "not allowed",
        ),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "a=rtpmap:abc PCMU"), "rtpmap"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "a=rtpmap:200 X/8000"), "above 127"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "a=ptime:fast"), "ptime"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "a=rtcp:99999"), "rtcp port"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "a=sendrecv:yes"), "takes no value"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "a=:x"), "not a token"),
        (sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "a=fmtp"), "needs a value"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=a\rb\r\nt=0 0\r\n", "CR or NUL"),
        ("v=0\n" + "a=x\n" * (MAX_SDP_SIZE // 4), "larger than"),
    ],
)
def test_malformed_descriptions(text: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        parse_sdp(text)


def test_non_utf8_bytes() -> None:
    with pytest.raises(SdpError, match="not UTF-8"):
        parse_sdp(b"v=0\r\ns=\xff\r\n")


def test_serialize_refuses_what_cannot_be_parsed() -> None:
    base = build_offer(1, "127.0.0.1", MediaOffer(4000, ("PCMU",)))
    for bad in (
        SessionDescription(origin=Origin(username="two words")),
        SessionDescription(origin=Origin(), session_name="a\r\nb=c"),
        SessionDescription(origin=Origin(), timings=()),
        SessionDescription(origin=Origin(), attributes=(Attribute("rtpmap", "junk"),)),
        SessionDescription(origin=Origin(), extra_lines=(("a", "x"),)),
        SessionDescription(origin=Origin(), media=(MediaDescription("audio", 1, "RTP/AVP", ()),)),
    ):
        with pytest.raises(SdpError):
            serialize_sdp(bad)
    assert parse_sdp(serialize_sdp(base)) == base


# --- codecs and offers ------------------------------------------------------------------------


def test_codec_table() -> None:
    assert (codec("pcmu").static_pt, codec("PCMA").static_pt, codec("g722").static_pt) == (0, 8, 9)
    assert codec("G722").clock_rate == 8000  # RFC 3551 4.5.2: 16 kHz audio, 8000 RTP clock
    assert (codec("OPUS").clock_rate, codec("opus").channels, codec("opus").static_pt) == (
        48000,
        2,
        None,
    )
    assert codec("vp8").clock_rate == codec("h264").clock_rate == 90000
    h264 = codec("H264").fmtp or ""
    assert "packetization-mode=1" in h264 and "profile-level-id=42e01f" in h264
    assert codec("telephone-event").fmtp == "0-16"
    assert set(CODECS) == {"pcmu", "pcma", "g722", "opus", "vp8", "h264", "telephone-event"}
    with pytest.raises(SdpError):
        codec("G729")


def test_offer_audio_ipv4() -> None:
    offer = build_offer(
        42, "192.0.2.10", MediaOffer(10000, ("PCMU", "PCMA", "G722"), ptime=20, maxptime=60)
    )
    text = serialize_sdp(offer)
    assert text.startswith("v=0\r\no=- 42 42 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n")
    assert "t=0 0\r\nm=audio 10000 RTP/AVP 0 8 9 96\r\n" in text
    for line in (
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:96 telephone-event/8000",
        "a=fmtp:96 0-16",
        "a=ptime:20",
        "a=maxptime:60",
        "a=sendrecv",
    ):
        assert line + "\r\n" in text
    assert "a=rtcp" not in text


def test_offer_ipv6_video_rtcp_and_direction() -> None:
    offer = build_offer(
        7,
        "2001:db8::5",
        MediaOffer(20000, ("opus",), direction=Direction.SENDONLY, rtcp_port=20011),
        MediaOffer(20002, ("H264", "VP8"), ptime=None, telephone_event=True),
        session_version=9,
    )
    assert offer.connection == Connection("2001:db8::5", "IP6")
    assert (offer.origin.addrtype, offer.origin.session_version) == ("IP6", 9)
    audio, video = offer.media
    assert audio.formats == ("96", "97")
    assert audio.rtpmaps[96] == RtpMap(96, "opus", 48000, 2)
    assert audio.rtpmaps[97] == RtpMap(97, "telephone-event", 48000)  # RFC 4733 2.1 clock
    assert audio.direction is Direction.SENDONLY
    assert audio.rtcp == Rtcp(20011)
    assert video.formats == ("96", "97")
    assert video.fmtp(96) == "profile-level-id=42e01f;packetization-mode=1"
    assert video.ptime is None
    assert "telephone-event" not in serialize_sdp(offer).split("m=video")[1]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: MediaOffer(1, ()),
        lambda: MediaOffer(70000, ("PCMU",)),
        lambda: MediaOffer(1, ("telephone-event",)),
        lambda: build_offer(1, "h", MediaOffer(1, ("VP8",))),
        lambda: build_offer(1, "h", None, MediaOffer(1, ("PCMU",))),
        lambda: build_offer(1, "h", None, None),
        lambda: MediaOffer(1, "PCMU"),
        lambda: MediaOffer(1, ("PCMU",), direction="sideways"),  # type: ignore[arg-type]
    ],
)
def test_offer_misuse(bad: Callable[[], object]) -> None:
    with pytest.raises(SdpError):
        bad()


# --- offer/answer (RFC 3264 section 10 / RFC 4317 style exchanges, written for these tests) ------

ALICE_OFFER = sdp(
    "v=0",
    "o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com",
    "s=-",
    "c=IN IP4 192.0.2.101",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0 8 111 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-11",
    "a=ptime:20",
    "m=video 51372 RTP/AVP 120 121",
    "a=rtpmap:120 VP8/90000",
    "a=rtpmap:121 H264/90000",
    "a=fmtp:121 profile-level-id=42e01f;packetization-mode=1",
)


def test_answer_audio_only_rejects_video_and_keeps_offer_pts() -> None:
    offer = parse_sdp(ALICE_OFFER)
    answer = build_answer(offer, 99, "192.0.2.201", MediaOffer(3456, ("opus", "PCMA"), ptime=40))
    assert len(answer.media) == 2
    audio, video = answer.media
    assert audio.formats == ("8", "111", "101")  # offer order, offer numbers, RFC 3264 6.1
    assert audio.rtpmaps[111] == RtpMap(111, "opus", 48000, 2)
    assert audio.fmtp(101) == "0-11"
    assert audio.ptime == 40
    assert audio.direction is Direction.SENDRECV
    assert (video.port, video.formats, video.attributes) == (0, ("120", "121"), ())
    assert answer.timings == offer.timings
    assert answer.connection == Connection("192.0.2.201")

    ours = build_answer(offer, 99, "192.0.2.201", MediaOffer(3456, ("opus", "PCMA")), order="ours")
    assert ours.media[0].formats == ("111", "8", "101")

    (stream,) = negotiated(offer, answer)
    assert stream == NegotiatedStream(
        index=0,
        kind="audio",
        remote_address="192.0.2.201",
        remote_rtp_port=3456,
        remote_rtcp_port=3457,
        remote_rtcp_address="192.0.2.201",
        local_port=49170,
        codec="PCMA",
        payload_type=8,
        local_payload_type=8,
        clock_rate=8000,
        channels=1,
        ptime=40,
        fmtp=None,
        telephone_event_pt=101,
        local_telephone_event_pt=101,
        direction=Direction.SENDRECV,
    )
    (theirs,) = negotiated(offer, answer, role="answerer")
    assert (theirs.remote_address, theirs.remote_rtp_port, theirs.local_port) == (
        "192.0.2.101",
        49170,
        3456,
    )
    assert theirs.ptime == 20


def test_answer_video_h264_with_dynamic_pt() -> None:
    offer = parse_sdp(ALICE_OFFER)
    answer = build_answer(
        offer,
        5,
        "2001:db8::9",
        MediaOffer(4000, ("PCMU",), telephone_event=False),
        MediaOffer(4002, ("H264",), ptime=None),
    )
    audio, video = answer.media
    assert audio.formats == ("0",)
    assert video.formats == ("121",)
    assert video.fmtp(121) == "profile-level-id=42e01f;packetization-mode=1"
    assert answer.connection == Connection("2001:db8::9", "IP6")
    streams = negotiated(offer, answer)
    assert [(s.kind, s.codec, s.payload_type, s.clock_rate) for s in streams] == [
        ("audio", "PCMU", 0, 8000),
        ("video", "H264", 121, 90000),
    ]
    assert streams[0].telephone_event_pt is None
    assert streams[1].ptime is None and streams[1].channels is None
    assert streams[1].remote_address == "2001:db8::9"


def test_different_payload_numbers_in_answer() -> None:
    """RFC 3264 5.1: each side sends with the numbers the other side listed."""
    offer = parse_sdp(ALICE_OFFER)
    answer = parse_sdp(
        sdp(
            "v=0",
            "o=bob 1 1 IN IP4 192.0.2.202",
            "s=-",
            "c=IN IP4 192.0.2.202",
            "t=0 0",
            "m=audio 6000 RTP/AVP 96 100",
            "a=rtpmap:96 OPUS/48000/2",
            "a=rtpmap:100 telephone-event/8000",
            "a=rtcp:7000 IN IP4 192.0.2.203",
            "m=video 0 RTP/AVP 120",
        )
    )
    (alice,) = negotiated(offer, answer)
    assert (alice.codec, alice.payload_type, alice.local_payload_type) == ("OPUS", 96, 111)
    assert alice.telephone_event_pt is None  # bob's event clock does not match opus
    assert (alice.remote_rtcp_port, alice.remote_rtcp_address) == (7000, "192.0.2.203")
    (bob,) = negotiated(offer, answer, role="answerer")
    assert (bob.codec, bob.payload_type, bob.local_payload_type) == ("opus", 111, 96)


def test_telephone_event_clock_follows_chosen_codec() -> None:
    """RFC 4733 section 2.1: the event clock is that of the audio codec in use."""
    offer = build_offer(1, "10.0.0.1", MediaOffer(5000, ("opus", "PCMU")))
    assert offer.media[0].formats == ("96", "0", "97", "98")  # 97 at 48 kHz, 98 at 8 kHz
    with_opus = build_answer(offer, 2, "10.0.0.2", MediaOffer(6000, ("opus",)))
    assert with_opus.media[0].formats == ("96", "97")
    (s,) = negotiated(offer, with_opus)
    assert (s.codec, s.telephone_event_pt) == ("opus", 97)
    with_pcmu = build_answer(offer, 2, "10.0.0.2", MediaOffer(6000, ("PCMU",)))
    assert with_pcmu.media[0].formats == ("0", "98")
    (s,) = negotiated(offer, with_pcmu)
    assert (s.codec, s.telephone_event_pt) == ("PCMU", 98)


def test_h264_packetization_mode() -> None:
    def video_offer(*fmtps: str) -> SessionDescription:
        lines = ["v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP4 10.0.0.1", "t=0 0"]
        pts = [str(100 + i) for i in range(len(fmtps))]
        lines.append("m=video 5000 RTP/AVP " + " ".join(pts))
        for pt, fmtp in zip(pts, fmtps, strict=True):
            lines += [f"a=rtpmap:{pt} H264/90000", f"a=fmtp:{pt} {fmtp}"]
        return parse_sdp(sdp(*lines))

    ours = MediaOffer(7000, ("H264",), ptime=None)
    mode0 = video_offer("profile-level-id=42e01f")
    assert build_answer(mode0, 1, "10.0.0.2", None, ours).media[0].port == 0
    both = video_offer("profile-level-id=42e01f", "profile-level-id=42e01f;packetization-mode=1")
    assert build_answer(both, 1, "10.0.0.2", None, ours).media[0].formats == ("101",)
    high = video_offer("profile-level-id=640c1f;packetization-mode=1")
    assert build_answer(high, 1, "10.0.0.2", None, ours).media[0].port == 0
    main_cb = video_offer("profile-level-id=4de01f;packetization-mode=1")
    assert build_answer(main_cb, 1, "10.0.0.2", None, ours).media[0].port == 7000


_D = Direction
DIRECTION_MATRIX = [
    # (offer, ours, answer)
    (_D.SENDRECV, _D.SENDRECV, _D.SENDRECV),
    (_D.SENDRECV, _D.SENDONLY, _D.SENDONLY),
    (_D.SENDRECV, _D.RECVONLY, _D.RECVONLY),
    (_D.SENDRECV, _D.INACTIVE, _D.INACTIVE),
    (_D.SENDONLY, _D.SENDRECV, _D.RECVONLY),
    (_D.SENDONLY, _D.SENDONLY, _D.INACTIVE),
    (_D.SENDONLY, _D.RECVONLY, _D.RECVONLY),
    (_D.SENDONLY, _D.INACTIVE, _D.INACTIVE),
    (_D.RECVONLY, _D.SENDRECV, _D.SENDONLY),
    (_D.RECVONLY, _D.SENDONLY, _D.SENDONLY),
    (_D.RECVONLY, _D.RECVONLY, _D.INACTIVE),
    (_D.RECVONLY, _D.INACTIVE, _D.INACTIVE),
    (_D.INACTIVE, _D.SENDRECV, _D.INACTIVE),
    (_D.INACTIVE, _D.SENDONLY, _D.INACTIVE),
    (_D.INACTIVE, _D.RECVONLY, _D.INACTIVE),
    (_D.INACTIVE, _D.INACTIVE, _D.INACTIVE),
]


@pytest.mark.parametrize(("offered", "ours", "expected"), DIRECTION_MATRIX)
def test_direction_matrix(offered: Direction, ours: Direction, expected: Direction) -> None:
    offer = build_offer(1, "10.0.0.1", MediaOffer(5000, ("PCMU",), direction=offered))
    answer = build_answer(offer, 2, "10.0.0.2", MediaOffer(6000, ("PCMU",), direction=ours))
    assert answer.media_direction(0) is expected
    (offerer,) = negotiated(offer, answer)
    (answerer,) = negotiated(offer, answer, role="answerer")
    assert answerer.direction is expected
    assert offerer.direction is expected.reverse()
    # whoever sends, the other end receives
    assert offerer.direction.sends == answerer.direction.receives
    assert offerer.direction.receives == answerer.direction.sends


def test_session_level_direction_is_inherited() -> None:
    offer = parse_sdp(ALICE_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n"))
    answer = build_answer(offer, 2, "10.0.0.2", MediaOffer(6000, ("PCMU",)))
    assert answer.media[0].direction is Direction.RECVONLY


def test_rejected_streams() -> None:
    offer = parse_sdp(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 h",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 5000 RTP/SAVP 0",
            "m=audio 0 RTP/AVP 0",
            "m=application 5002 UDP/DTLS/SCTP webrtc-datachannel",
            "m=audio 5004 RTP/AVP 18",
            "m=audio 5006 RTP/AVP 8",
            "m=audio 5008 RTP/AVP 0",
            "m=video 5010 RTP/AVP 96",
            "a=rtpmap:96 VP8/90000",
        )
    )
    answer = build_answer(offer, 2, "10.0.0.2", MediaOffer(6000, ("PCMU", "PCMA")))
    assert [m.port for m in answer.media] == [0, 0, 0, 0, 6000, 0, 0]
    assert [m.media for m in answer.media] == [m.media for m in offer.media]
    assert answer.media[2].formats == ("webrtc-datachannel",)
    streams = negotiated(offer, answer)
    assert [(s.index, s.codec, s.remote_rtp_port) for s in streams] == [(4, "PCMA", 6000)]
    assert parse_sdp(serialize_sdp(answer)) == answer


def test_negotiated_errors() -> None:
    offer = parse_sdp(ALICE_OFFER)
    answer = build_answer(offer, 2, "10.0.0.2", MediaOffer(6000, ("PCMU",)))
    with pytest.raises(SdpError, match="m-lines"):
        negotiated(offer, SessionDescription(origin=Origin(), media=answer.media[:1]))
    swapped = SessionDescription(origin=Origin(), media=answer.media[::-1])
    with pytest.raises(SdpError, match="answer is"):
        negotiated(offer, swapped)
    no_c = SessionDescription(origin=Origin(), media=answer.media)
    with pytest.raises(SdpError, match="no c= line"):
        negotiated(offer, no_c)
    foreign = SessionDescription(
        origin=Origin(),
        connection=Connection("10.0.0.2"),
        media=(MediaDescription("audio", 6000, "RTP/AVP", ("18",)), answer.media[1]),
    )
    with pytest.raises(SdpError, match="no codec"):
        negotiated(offer, foreign)


# --- property tests ---------------------------------------------------------------------------

_TEXT_ALPHABET = string.ascii_letters + string.digits + " \t=:/.-;,#\x01\x7f\u00e9\u20ac\u4e2d"
_text = st.text(alphabet=_TEXT_ALPHABET, max_size=16)
_word = st.text(alphabet=string.ascii_letters + string.digits + "-./:_+", min_size=1, max_size=12)
_token = st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=10)
_KNOWN = {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp", *(d.value for d in Direction)}
_connections = st.builds(Connection, address=_word, addrtype=_word, nettype=_word)
_attributes = st.one_of(
    st.builds(Attribute, _token.filter(lambda n: n not in _KNOWN), st.none() | _text),
    st.sampled_from([Attribute(d.value) for d in Direction]),
    st.builds(
        lambda pt, name, rate, ch: Attribute("rtpmap", str(RtpMap(pt, name, rate, ch))),
        st.integers(0, 127),
        _token,
        st.integers(1, 10**6),
        st.none() | st.integers(1, 8),
    ),
    st.builds(lambda pt, p: Attribute("fmtp", f"{pt} {p}"), st.integers(0, 127), _word),
    st.builds(lambda n: Attribute("ptime", str(n)), st.integers(1, 1000)),
    st.builds(lambda n: Attribute("maxptime", str(n)), st.integers(1, 1000)),
    st.builds(
        lambda n, c: Attribute("rtcp", str(Rtcp(n, c))),
        st.integers(0, 65535),
        st.none() | _connections,
    ),
)
_extra = st.tuples(st.sampled_from("fghjlnqwxy"), _text)
_media = st.builds(
    MediaDescription,
    media=_token,
    port=st.integers(0, 65535),
    proto=_word,
    formats=st.lists(_word, min_size=1, max_size=4).map(tuple),
    port_count=st.none() | st.integers(1, 4),
    information=st.none() | _text,
    connections=st.lists(_connections, max_size=2).map(tuple),
    bandwidths=st.lists(_text, max_size=2).map(tuple),
    key=st.none() | _text,
    attributes=st.lists(_attributes, max_size=5).map(tuple),
    extra_lines=st.lists(_extra, max_size=2).map(tuple),
)
_descriptions = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin, _word, st.integers(0, 2**64), st.integers(0, 2**64), _word, _word, _word
    ),
    session_name=_text,
    information=st.none() | _text,
    uri=st.none() | _text,
    emails=st.lists(_text, max_size=2).map(tuple),
    phones=st.lists(_text, max_size=2).map(tuple),
    connection=st.none() | _connections,
    bandwidths=st.lists(_text, max_size=2).map(tuple),
    timings=st.lists(
        st.builds(
            Timing,
            st.integers(0, 2**40),
            st.integers(0, 2**40),
            st.lists(_text, max_size=2).map(tuple),
        ),
        min_size=1,
        max_size=2,
    ).map(tuple),
    zone=st.none() | _text,
    key=st.none() | _text,
    attributes=st.lists(_attributes, max_size=4).map(tuple),
    media=st.lists(_media, max_size=2).map(tuple),
    extra_lines=st.lists(_extra, max_size=2).map(tuple),
)


@given(_descriptions)
def test_property_round_trip(sd: SessionDescription) -> None:
    assert parse_sdp(serialize_sdp(sd)) == sd


@given(st.text(max_size=300))
def test_fuzz_text_only_sdp_error(text: str) -> None:
    with contextlib.suppress(SdpError):
        parse_sdp("v=0\r\n" + text)
    with contextlib.suppress(SdpError):
        parse_sdp(text)


_OFFER_TEXT = ALICE_OFFER + "a=rtcp:9 IN IP4 10.0.0.1\r\na=sendonly\r\n"


@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_OFFER_TEXT)),
            st.integers(0, 6),
            st.text(alphabet="0123456789 /:=;\r\nacmtxv-", max_size=4),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fuzz_mutated_offer_through_offer_answer(edits: list[tuple[int, int, str]]) -> None:
    text = _OFFER_TEXT
    for position, cut, insert in edits:
        text = text[:position] + insert + text[position + cut :]
    try:
        offer = parse_sdp(text)
    except SdpError:
        return
    ours = MediaOffer(6000, ("PCMU", "PCMA", "opus"))
    try:
        answer = build_answer(offer, 1, "10.0.0.2", ours, MediaOffer(6002, ("VP8", "H264")))
        assert parse_sdp(serialize_sdp(answer)) == answer
        negotiated(offer, answer)
        negotiated(offer, answer, role="answerer")
        mirrored = build_answer(offer, 1, "10.0.0.2", ours)
        negotiated(parse_sdp(ALICE_OFFER), replace_media(mirrored, 2))
    except SdpError:
        pass


def replace_media(sd: SessionDescription, count: int) -> SessionDescription:
    """``sd`` with its m-lines cut or padded to ``count`` (to feed odd answers to negotiated)."""
    media = list(sd.media[:count])
    while len(media) < count:
        media.append(MediaDescription("video", 0, "RTP/AVP", ("0",)))
    return SessionDescription(origin=sd.origin, connection=sd.connection, media=tuple(media))
