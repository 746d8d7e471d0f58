"""Write a pcap of one G.711 PCMU RTP stream (RFC 3550 section 5.1, RFC 3551 section 4.5.14).

SIPp's ``play_pcap_audio`` replays the UDP payloads of a capture with the capture's timing and
rewrites the ports and addresses; its bundled ``g711a.pcap`` has 30 ms packets, so the
benchmark writes its own: libpcap's classic file format (a 24-octet global header, then a
16-octet record header per packet), Ethernet II / IPv4 / UDP / RTP, 160 octets of PCMU every
20 ms, sequence number +1 and timestamp +160 per packet, one SSRC.
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["PACKET_S", "PAYLOAD_OCTETS", "rtp_packet", "write_rtp_pcap"]

PACKET_S = 0.020
"""Packetization time: 20 ms of 8 kHz audio."""
PAYLOAD_OCTETS = 160
"""One PCMU octet per sample (RFC 3551 section 4.5.14)."""

_PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_LINKTYPE_ETHERNET = 1
_PT_PCMU = 0


def _ip_checksum(header: bytes) -> int:
    """The IPv4 header checksum (RFC 791 section 3.1, RFC 1071): one's complement sum."""
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _mulaw_silence() -> bytes:
    # 0xFF is the mu-law code of linear zero (ITU-T G.711): the content does not change the
    # load, only the octet count does.
    return b"\xff" * PAYLOAD_OCTETS


def rtp_packet(seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """An RTP packet: the 12-octet fixed header of RFC 3550 section 5.1, V=2, PT 0 (PCMU)."""
    first = 0x80  # version 2, no padding, no extension, no CSRC
    second = (0x80 if marker else 0) | _PT_PCMU
    header = struct.pack(
        "!BBHII", first, second, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF
    )
    return header + payload


def _frame(udp_payload: bytes, src_port: int, dst_port: int, ident: int) -> bytes:
    src_ip = bytes((127, 0, 0, 1))
    dst_ip = bytes((127, 0, 0, 1))
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(udp_payload), 0) + udp_payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0, src_ip, dst_ip
    )
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    ethernet = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ethernet + ip + udp


def write_rtp_pcap(
    path: Path,
    count: int,
    src_port: int = 6000,
    dst_port: int = 6000,
    ssrc: int = 0x5EED0711,
) -> int:
    """Write ``count`` PCMU packets 20 ms apart to ``path`` (count x 20 ms); return ``count``."""
    payload = _mulaw_silence()
    samples = round(PACKET_S * 8000)
    out = bytearray(struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET))
    for index in range(count):
        micros = index * round(PACKET_S * 1_000_000)
        packet = rtp_packet(index, index * samples, ssrc, payload, marker=index == 0)
        frame = _frame(packet, src_port, dst_port, index)
        out += struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))
    return count
