"""Parse and serialize cost of a typical SIP INVITE with an SDP offer.

Prints microseconds per message for parse_message(), to_bytes(), the pair,
and the typed accessors a UAS touches (top Via, CSeq, From/To tags: already
cached by parse_message's validation), plus a reference loop so figures from
machines of different speed compare as ratios.  A figure, not a pass/fail:

    python bench/sip_parse.py [--number N]
"""

from __future__ import annotations

import argparse
import timeit

from callmeter.sip.message import SipRequest, parse_message

SDP = (
    b"v=0\r\n"
    b"o=callmeter 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"a=rtcp:40001\r\n"
)

INVITE = (
    b"INVITE sip:bob@198.51.100.7:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK3f2a8c1d9e0b4a7c6d5e4f3a\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice 0001" <sip:alice0001@example.com>;tag=8c2f1a9b3d4e5f60\r\n'
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: 5a0e9c2b7d1f4e3a8b6c0d9e2f1a3b4c@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice0001@192.0.2.10:5060;transport=udp>;expires=3600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: callmeter-worker/0.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def _touch(message: SipRequest) -> None:
    headers = message.headers
    assert headers.top_via().branch
    assert headers.cseq().number == 1
    assert headers.from_addr().tag
    assert headers.to_addr().tag is None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    number: int = args.number
    message = parse_message(INVITE)
    assert isinstance(message, SipRequest)

    def best(stmt: object) -> float:
        runs = timeit.repeat(stmt, number=number, repeat=5)  # type: ignore[arg-type]
        return min(runs) / number * 1e6

    def parse_and_serialize() -> None:
        parse_message(INVITE).to_bytes()

    def parse_and_touch() -> None:
        parsed = parse_message(INVITE)
        assert isinstance(parsed, SipRequest)
        _touch(parsed)

    reference = best(lambda: sum(range(1000)))
    print(f"INVITE with SDP: {len(INVITE)} bytes, {len(message.headers)} header fields")
    print(f"reference          {reference:7.1f} us  (sum(range(1000)): this machine's speed)")
    print(f"parse_message      {best(lambda: parse_message(INVITE)):7.1f} us")
    print(f"to_bytes           {best(message.to_bytes):7.1f} us")
    print(f"parse + to_bytes   {best(parse_and_serialize):7.1f} us")
    touched = best(parse_and_touch)
    print(f"parse + accessors  {touched:7.1f} us  ({touched / reference:.1f} x reference)")


if __name__ == "__main__":
    main()
