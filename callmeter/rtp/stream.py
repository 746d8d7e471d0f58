"""One negotiated RTP stream on real sockets: send through the pacer, receive, RTCP (RFC 3550).

:class:`RtpStream` is the thin Twisted shell around the sans-IO cores (``packet``, ``rtcp``,
``stats``): it owns an RTP socket on an even port and an RTCP socket on the next (odd) port
(section 11), bound to SIP_IP and taken from the :class:`~callmeter.rtp.ports.RtpPortAllocator`.

Sending (section 5.1): our own random SSRC, random initial sequence number and timestamp
(section 5.1 "SHOULD be random"); the payloads of a :class:`PreparedMedia` are replayed with
only sequence number, timestamp and SSRC rewritten. The stream is a
:class:`~callmeter.rtp.pacer.PacedSource`: the process-wide pacer calls :meth:`pace`, and
packets go out through the socket's own ``sendto`` (not ``transport.write``, ARCHITECTURE
"Hot path rules"). A packet's due time is ``start + media_ts / clock_rate``; when the pacer
stalled more than ``max_late`` the overdue packets are skipped (their media time passes, the
sequence number does not advance: the receiver sees a timestamp jump, not network loss) and
counted in ``skipped``.

Receiving: the sockets are plain non-blocking UDP sockets read through the process-wide
:class:`UdpMux` (one reactor reader for all of them, see there). Statistics are kept per
remote SSRC and payload type. Packets of the negotiated payload type (the media) update a
:class:`~callmeter.rtp.stats.ReceiverStats` per SSRC with ``min_sequential=1`` (a negotiated
port: the first packet is trusted); RFC 4733 telephone events, RFC 3389 comfort noise (PT 13)
and any other payload type are counted as what they are (:class:`_PayloadCount`), never as
media: in the media's own SSRC they take their sequence numbers
(:meth:`~callmeter.rtp.stats.ReceiverStats.on_other`), in an SSRC of their own (a peer that
sends DTMF from a second SSRC, as SIPp's DTMF pcaps do) their gaps are nobody's loss. Loss,
jitter and MOS are the media's. Symmetric RTP (RFC 4961): we send to the address and port of
the SDP, and a source that sends from elsewhere is logged once per SSRC (it is still counted).

Missing media is never perfect: a stream that should receive (sendrecv, recvonly) and got
nothing says so in its snapshot's ``media_state`` (``no_media``, or ``one_way`` when the
peer's RTCP reports receiving our RTP), one that got nothing for
:data:`~callmeter.rtp.stats.MEDIA_TIMEOUT_S` while the call was up ``stopped`` (with
``stopped_at_s``), and then loss, jitter and MOS are None, not 0 and 4.4.

RTCP (section 6): a compound SR (when we have sent RTP) or RR, then SDES CNAME (section 6.1),
every ``rtcp_interval`` (5 s) randomized by 0.5-1.5 (section 6.3.1; the first report after
half an interval), and a last compound with BYE (section 6.6) on :meth:`stop`. Incoming SRs
are remembered for our blocks' LSR/DLSR (6.4.1); incoming report blocks about our SSRC give
the round-trip time (A - LSR - DLSR).
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from callmeter.media.prepared import PreparedMedia
from callmeter.quality import emodel
from callmeter.rtp._fastpath import Dispatch, ReaderState, SendState, timestamp_arrivals
from callmeter.rtp.pacer import Pacer
from callmeter.rtp.ports import PortPair, RtpPortAllocator, bind_pair
from callmeter.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_compound,
    randomized_interval,
)
from callmeter.rtp.stats import MEDIA_TIMEOUT_S, ReceiverStats, SenderStats
from callmeter.sip.sdp import Direction, NegotiatedStream

__all__ = [
    "DEFAULT_RTCP_INTERVAL",
    "MEDIA_STATES",
    "PT_CN",
    "RtpStream",
    "StreamReactor",
    "StreamSnapshot",
    "UdpMux",
    "one_way_delay_ms",
]

#: Nominal RTCP report interval, seconds (RFC 3550 section 6.2 minimum).
DEFAULT_RTCP_INTERVAL = 5.0

#: RFC 3389 comfort noise (RFC 3551's static payload type 13).
PT_CN = 13

#: A stream's ``media_state``: "ok" (media received, still arriving), "no_media" (should
#: receive, got no RTP at all), "one_way" (got none, but the peer's RTCP reports receiving
#: ours), "stopped" (got some, then none for MEDIA_TIMEOUT_S while the call was up),
#: "waiting" (a running stream's first MEDIA_TIMEOUT_S: nothing yet, no verdict yet),
#: "not_expected" (never started receiving: sendonly, inactive, a call that never began).
MEDIA_STATES = ("ok", "no_media", "one_way", "stopped", "waiting", "not_expected")

_U32 = 0xFFFFFFFF
_RECV_SIZE = 65536  # any UDP datagram whole: the byte counts stay right
_HEADER = struct.Struct("!BBHII")
_unpack_header = _HEADER.unpack_from


class StreamReactor(Protocol):
    """The reactor features a stream uses: IReactorTime, and IReactorFDSet for the mux."""

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> IDelayedCall:
        """Schedule a call (IReactorTime)."""

    def seconds(self) -> float:
        """The current time (IReactorTime)."""

    def addReader(self, reader: Any) -> None:
        """Watch a file descriptor for reading (IReactorFDSet)."""

    def removeReader(self, reader: Any) -> None:
        """Stop watching it (IReactorFDSet)."""


Handler = Callable[[float], None]


class _SocketReader:
    """IReadDescriptor of one socket, for a reactor-per-socket mux (no epoll)."""

    def __init__(self, sock: socket.socket, handler: Handler, seconds: Callable[[], float]):
        self._fileno = sock.fileno()
        self._handler = handler
        self._seconds = seconds

    def fileno(self) -> int:
        return self._fileno

    def doRead(self) -> None:
        self._handler(self._seconds())

    def logPrefix(self) -> str:
        return "RtpSocket"

    def connectionLost(self, reason: object) -> None:
        return None


class UdpMux:
    """Every RTP/RTCP socket of the process behind ONE reactor reader (Linux epoll).

    Receiving stays in the reactor thread and loop, but instead of one reactor reader per
    socket (Twisted's dispatch: logging context, ``doRead`` loop that ends in an EAGAIN
    exception, about half the receive cost measured by bench/rtp_load.py), a private
    level-triggered epoll set (:class:`~callmeter.rtp._fastpath.Dispatch`) holds the
    sockets and its descriptor is the reactor's reader: one reactor event per batch, then
    one read per ready socket, in C for a stream's RTP socket (an ``_RtpReceiver``) and a
    call of the handler for the others. Those handlers get the time the batch was reported
    (the packets were all queued by then); the RTP sockets carry the kernel's own arrival
    stamps (see :class:`_RtpReceiver`). With ``per_socket=True``
    each socket is its own reactor reader instead (bench/rtp_load.py compares the two).
    """

    log = Logger()

    def __init__(self, reactor: StreamReactor, *, per_socket: bool = False) -> None:
        self._reactor = reactor
        self._seconds = reactor.seconds
        self._readers: dict[int, _SocketReader] = {}
        self._dispatch: Dispatch | None = None if per_socket else Dispatch()
        self._watching = False

    def __len__(self) -> int:
        return len(self._readers) if self._dispatch is None else len(self._dispatch)

    def add(self, sock: socket.socket, handler: Handler) -> None:
        """Call ``handler(arrival_time)`` whenever ``sock`` is readable."""
        fd = sock.fileno()
        if self._dispatch is None:
            reader = _SocketReader(sock, handler, self._seconds)
            self._readers[fd] = reader
            self._reactor.addReader(reader)
            return
        self._dispatch.register(fd, handler)
        if not self._watching:
            self._watching = True
            self._reactor.addReader(self)

    def remove(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` (before closing it)."""
        fd = sock.fileno()
        if self._dispatch is None:
            reader = self._readers.pop(fd, None)
            if reader is not None:
                self._reactor.removeReader(reader)
            return
        if self._dispatch.unregister(fd) and not len(self._dispatch) and self._watching:
            self._watching = False
            self._reactor.removeReader(self)

    def drain(self) -> None:
        """Read whatever is queued now, outside a reactor turn (see ``Pacer.after_tick``)."""
        if self._dispatch is not None and self._watching:
            self.doRead()

    # IReadDescriptor of the epoll set
    def fileno(self) -> int:
        assert self._dispatch is not None
        return self._dispatch.fileno()

    def doRead(self) -> None:
        assert self._dispatch is not None
        try:
            self._dispatch.dispatch(self._seconds())
        except Exception:
            # One stream's bug must not stop every stream's receiving (the reactor would
            # drop this reader): the rest of the batch is still ready and comes next turn.
            self.log.failure("RTP/RTCP receive handler failed")

    def logPrefix(self) -> str:
        return "UdpMux"

    def connectionLost(self, reason: object) -> None:
        return None


class _Sockets(NamedTuple):
    """The sockets of a stream: RTP connected to the peer, RTP from anyone else, RTCP."""

    rtp: socket.socket
    stray: socket.socket
    rtcp: socket.socket


def one_way_delay_ms(rtt_ms: float | None, jitter_ms: float, ptime_ms: float) -> float:
    """The mouth-to-ear delay estimate fed to the E-model (ITU-T G.107 Ta).

    Half the mean RTCP round-trip time (0 before the first RTT sample), plus one packet
    time of packetization, plus a jitter buffer of twice the measured interarrival jitter
    but at least one packet time: ``rtt/2 + ptime + max(2 * jitter, ptime)``.
    """
    return (rtt_ms or 0.0) / 2.0 + ptime_ms + max(2.0 * jitter_ms, ptime_ms)


def _emodel_values(codec: str, plc: bool) -> emodel.CodecImpairment | None:
    """The codec's G.113 Ie and Bpl (with or without concealment); None: none known."""
    try:
        return emodel.codec_impairment(codec, plc)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """Cumulative per-stream figures (SPEC "Metrics"); ``as_dict`` for JSON.

    ``packets_received``/``bytes_received`` count every RTP datagram of every remote SSRC
    and payload type (bytes with the RTP header, without UDP/IP); of those,
    ``events_received`` are RFC 4733 telephone events, ``cn_received`` RFC 3389 comfort
    noise, ``other_payload_received`` another payload type than the negotiated ones, and
    ``other_ssrc_packets`` (any payload type, overlapping the others) came from another SSRC
    than the main media SSRC. ``expected``/``lost`` are the media's (the negotiated payload
    type's SSRCs): the packets expected and never received (RFC 3550 A.3 without
    duplicates), ``loss_pct`` that over ``expected``. ``jitter_ms`` is the A.8 jitter of the
    main media SSRC (the one with the most media packets). ``loss_pct``, ``jitter_ms`` and
    the E-model are None when no media packet was received. ``stray_packets`` are those
    (counted too) that came from another address than the SDP's (RFC 4961: a NAT or an SBC
    that does not send from where it receives). ``rtt_*`` from RTCP LSR/DLSR (6.4.1), None
    before the first sample. ``delay_ms`` is :func:`one_way_delay_ms`;
    ``r_factor``/``mos`` the E-model of what we received (audio only), ``emodel`` the
    codec's Ie and Bpl it uses and whether they assume concealment
    (:meth:`~callmeter.quality.emodel.CodecImpairment.as_dict`; None for video or a codec
    the E-model has no values for). ``media_state`` is
    one of :data:`MEDIA_STATES`; ``stopped_at_s`` (state "stopped") is when the last packet
    arrived, in seconds from the stream's start.
    """

    kind: str
    codec: str
    direction: str
    local_port: int
    remote: str
    ssrc: int
    remote_ssrcs: int
    packets_sent: int
    bytes_sent: int
    send_errors: int
    skipped: int
    packets_received: int
    bytes_received: int
    expected: int
    lost: int
    loss_pct: float | None
    jitter_ms: float | None
    out_of_order: int
    duplicates: int
    stray_packets: int
    rtt_ms: float | None
    rtt_mean_ms: float | None
    rtt_max_ms: float | None
    rtcp_sent: int
    rtcp_received: int
    bye_received: bool
    delay_ms: float | None
    r_factor: float | None
    mos: float | None
    media_state: str = "ok"
    stopped_at_s: float | None = None
    events_received: int = 0
    cn_received: int = 0
    other_payload_received: int = 0
    other_ssrc_packets: int = 0
    emodel: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the fields."""
        return asdict(self)


class _PayloadCount:
    """Packets of one SSRC and payload type that are not the stream's media.

    ``kind`` is "event" (RFC 4733 telephone-event), "cn" (RFC 3389 comfort noise) or
    "other" (a payload type not negotiated for this stream). The C reader feeds it through
    :meth:`on_packet` (it is no SeqState): counted, and in the media's own SSRC the
    sequence number goes to the media's statistics (:meth:`ReceiverStats.on_other`), so
    a DTMF digit in the audio's sequence is not audio lost, and a second SSRC's gaps are
    nobody's loss.
    """

    __slots__ = ("bytes", "kind", "last_arrival", "packets", "pt", "ssrc", "stats")

    def __init__(self, stats: dict[int, ReceiverStats], ssrc: int, pt: int, kind: str) -> None:
        self.stats = stats
        self.ssrc = ssrc
        self.pt = pt
        self.kind = kind
        self.packets = 0
        self.bytes = 0
        self.last_arrival = 0.0

    def on_packet(self, seq: int, rtp_ts: int, arrival: float, size: int) -> None:
        self.packets += 1
        self.bytes += size
        if arrival > self.last_arrival:
            self.last_arrival = arrival
        media = self.stats.get(self.ssrc)
        if media is not None:
            media.on_other(seq, rtp_ts, arrival)


class _RtpReceiver(ReaderState):
    """The RTP sockets' reader: O(1) statistics per packet, nothing else (the hot path).

    The stream's main RTP socket is connected to the SDP's address once negotiated, so the
    kernel hands it only that peer's datagrams. Reading them is the C base class's
    (:class:`~callmeter.rtp._fastpath.ReaderState`, called with the arrival time): one
    ``recv`` into the process's receive buffer, the header's sequence number, timestamp,
    payload type and SSRC, and the statistics of that SSRC and payload type fed in C, with
    no Python object per packet; it comes back here for a new SSRC or payload type
    (:meth:`_source`, with the key ``PT << 32 | SSRC``: the media's :class:`ReceiverStats`
    of that SSRC, or a :class:`_PayloadCount`) and for a datagram that is not RTP or
    arrives while receiving is off (:meth:`datagram_received`). The socket
    has SO_TIMESTAMPNS on: a packet's arrival time is the kernel's stamp of when it was
    queued, as a capture tool sees it, not when this process got round to reading it (a
    pacer tick or a metric window in between would otherwise show up as jitter). Datagrams
    from anywhere else arrive on the stream's second socket on the same port (see
    :meth:`RtpStream.open`) and go through :meth:`read_stray`, which reads their address
    and has the stream log the source once per SSRC (RFC 4961, symmetric RTP). Every
    packet is counted either way.
    """

    __slots__ = (
        "__dict__",
        "_stream",
        "ignored",
        "invalid",
        "others",
        "sources",
        "stats",
        "stray_recvfrom",
    )

    def __init__(self, stream: RtpStream) -> None:
        self._stream = stream
        self.stats: dict[int, ReceiverStats] = {}  # the media's, by SSRC
        self.others: list[_PayloadCount] = []  # events, comfort noise, other payload types
        self.sources: dict[int, ReceiverStats | _PayloadCount] = {}  # by PT << 32 | SSRC
        self.enabled = True
        self.invalid = 0
        self.ignored = 0
        self._fd = -1
        self._last_ssrc = -1
        self._last = None
        self.stray_recvfrom: Callable[[int], tuple[bytes, Any]] | None = None

    def read_stray(self, now: float) -> None:
        """The second socket is readable: a datagram from a source the SDP did not name."""
        try:
            data, addr = self.stray_recvfrom(_RECV_SIZE)  # type: ignore[misc]
        except OSError:
            return
        self.datagram_received(data, addr, now)

    def datagram_received(self, data: bytes, addr: Any, now: float) -> None:
        """Account one RTP datagram from ``addr`` (None: the SDP's) that arrived at ``now``."""
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            self.invalid += 1
            return
        if not self.enabled:
            self.ignored += 1  # sendonly/inactive: RFC 3264 section 5.1, not ours to count
            return
        _, marker_pt, seq, ts, ssrc = _unpack_header(data)
        key = (marker_pt & 0x7F) << 32 | ssrc
        stats = self._last if key == self._last_ssrc else self._source(key)
        if addr is not None:
            self._stream._check_source(ssrc, addr)
        stats.on_packet(seq, ts, now, len(data))

    def _source(self, key: int) -> ReceiverStats | _PayloadCount:
        """The statistics of SSRC ``key & 0xFFFFFFFF`` and payload type ``key >> 32``."""
        stats = self.sources.get(key)
        if stats is None:
            stats = self._stream._new_payload(key & _U32, key >> 32)
            self.sources[key] = stats
        self._last_ssrc = key
        self._last = stats
        return stats

    def forget_payload_types(self) -> None:
        """The negotiated payload types changed (a re-INVITE): classify them again.

        What was counted stays counted; the next packet of each payload type is looked at
        anew (:meth:`_source`).
        """
        self.sources = {k: v for k, v in self.sources.items() if isinstance(v, ReceiverStats)}
        self._last_ssrc = -1
        self._last = None


class RtpStream(SendState):
    """One media stream (audio or video) of a call: RTP + RTCP sockets, sender, statistics.

    Life cycle: :meth:`open` (bind a port pair; the SDP needs the port), :meth:`configure`
    with the negotiated stream and the prepared media to send, :meth:`start`,
    :meth:`stop` (idempotent; the ports go back to the allocator once both sockets are
    closed, :attr:`closed` fires then).
    """

    # The send path's fields (_due, _seq, _mts, _payloads, ...) and pace() are the C base
    # class's (SendState); slots for the rest, and a __dict__ for test instrumentation.
    __slots__ = (
        "__dict__",
        "_allocator",
        "_ever_receiving",
        "_recv_since",
        "_rng",
        "_rtcp_addr",
        "_rtcp_call",
        "_rtcp_sendto",
        "_rtp_addr",
        "_sockets",
        "_started",
        "_started_at",
        "_stopped",
        "_stopped_at",
        "_strays",
        "byes",
        "clock_rate",
        "closed",
        "cname",
        "direction",
        "kind",
        "media",
        "mux",
        "negotiated",
        "pacer",
        "pair",
        "plc",
        "reactor",
        "receiver",
        "remote_cnames",
        "rtcp_interval",
        "rtcp_invalid",
        "rtcp_received",
        "rtcp_sent",
        "stray_packets",
    )

    log = Logger()
    sender: SenderStats  # the C base's field, with this type

    def __init__(
        self,
        reactor: StreamReactor,
        pacer: Pacer,
        mux: UdpMux,
        *,
        kind: str = "audio",
        clock_rate: int = 8000,
        cname: str | None = None,
        rtcp_interval: float = DEFAULT_RTCP_INTERVAL,
        rng: random.Random | None = None,
        plc: bool = True,
    ) -> None:
        self.reactor = reactor
        self.pacer = pacer
        self.mux = mux
        self.kind = kind
        self.plc = plc  # the E-model's assumption: the receiver conceals lost packets
        rng = rng or random.Random(secrets.randbits(64))
        self._rng = rng
        self.ssrc = rng.getrandbits(32)
        self.cname = cname or f"{secrets.token_hex(8)}"
        self.rtcp_interval = rtcp_interval
        self.sender = SenderStats(self.ssrc)
        self.receiver = _RtpReceiver(self)
        self.pair: PortPair | None = None
        self.negotiated: NegotiatedStream | None = None
        self.media: PreparedMedia | None = None
        self.direction = Direction.SENDRECV
        self.clock_rate = clock_rate
        self.send_errors = 0
        self.skipped = 0
        self.stray_packets = 0  # RTP from elsewhere than the SDP's address (still counted)
        self._strays: set[int] = set()  # their SSRCs, each logged once
        self.rtcp_sent = 0
        self.rtcp_received = 0
        self.rtcp_invalid = 0
        self.byes: set[int] = set()
        self.remote_cnames: dict[int, bytes] = {}
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._allocator: RtpPortAllocator | None = None
        self._sockets: _Sockets | None = None
        self._rtp_send = None
        self._rtcp_sendto: Callable[[bytes, Any], Any] | None = None
        self._rtp_addr: tuple[str, int] = ("", 0)
        self._rtcp_addr: tuple[str, int] = ("", 0)
        self._rtcp_call: IDelayedCall | None = None
        self._started = False
        self._stopped = False
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._recv_since: float | None = None  # since when we receive (started, direction)
        self._ever_receiving = False
        # Sender state (RFC 3550 5.1: random initial sequence number and timestamp).
        self._seq = rng.getrandbits(16)
        self._ts0 = rng.getrandbits(32)
        self._mts = 0  # media time since start, timestamp units (never wraps: Python int)
        self._index = 0
        self._start = 0.0
        self._due = 0.0  # start + mts / clock_rate: when the next packet is due
        self._inv_rate = 1.0 / clock_rate
        self._payloads = ()
        self._second = ()
        self._incs = ()
        self._n = 0
        self._rtp_fd = -1
        lateness = pacer.lateness
        self._late_counts = lateness.counts
        self._late_inv = lateness.inv_width
        self._max_late = pacer.max_late

    # --- sockets ------------------------------------------------------------------------

    @property
    def local_port(self) -> int:
        """The RTP port (even); 0 before :meth:`open`."""
        return self.pair.rtp if self.pair else 0

    def open(self, allocator: RtpPortAllocator, interface: str) -> PortPair:
        """Bind the RTP and RTCP sockets on ``interface`` (SIP_IP) with a pair from the range.

        The RTP port has two sockets, both with SO_REUSEADDR (so no other program that
        did not ask for it can share the port): the main one, which :meth:`configure`
        connects to the SDP's address (the kernel then gives it that peer's datagrams
        and it sends with ``send``, no address to convert per packet), and a second one,
        never connected, that receives whatever comes from elsewhere (Linux prefers
        the connected socket for its peer, the other one for everyone else).

        Raises :exc:`~callmeter.rtp.ports.PortRangeExhausted` when no pair is left.
        """
        if self.pair is not None:
            raise ValueError("stream already open")
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET

        def bind_one(port: int, shared: bool = False) -> socket.socket:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                if shared:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((interface, port))
            except BaseException:
                sock.close()
                raise
            return sock

        def bind(port: int) -> _Sockets:
            opened: list[socket.socket] = []
            try:
                opened.append(bind_one(port, shared=True))
                opened.append(bind_one(port, shared=True))
                opened.append(bind_one(port + 1))
            except BaseException:
                for sock in opened:
                    sock.close()
                raise
            return _Sockets(*opened)

        pair, sockets = bind_pair(allocator, bind)
        self.pair = pair
        self._allocator = allocator
        self._sockets = sockets
        timestamp_arrivals(sockets.rtp)  # the kernel's arrival times for A.8 (_RtpReceiver)
        self.receiver._fd = sockets.rtp.fileno()
        self.receiver.stray_recvfrom = sockets.stray.recvfrom
        self._rtcp_sendto = sockets.rtcp.sendto
        self.mux.add(sockets.rtp, self.receiver)
        self.mux.add(sockets.stray, self.receiver.read_stray)
        self.mux.add(sockets.rtcp, self._read_rtcp)
        return pair

    # --- negotiation --------------------------------------------------------------------

    def configure(self, stream: NegotiatedStream, media: PreparedMedia | None) -> None:
        """Apply the offer/answer result (again on a re-INVITE): peer, payload type, direction.

        ``media`` is what we send; it must match the negotiated codec and is required when
        the direction sends. Raises ValueError for an unusable description.
        """
        if self._stopped:
            raise ValueError("stream stopped")
        try:
            address = ipaddress.ip_address(stream.remote_address)
            rtcp_address = ipaddress.ip_address(stream.remote_rtcp_address)
        except ValueError:
            raise ValueError(
                f"SDP connection address {stream.remote_address!r} is not an IP address"
            ) from None
        if stream.direction.sends:
            if media is None:
                raise ValueError(f"no prepared media to send {stream.codec}")
            if media.codec.lower() != stream.codec.lower():
                raise ValueError(f"prepared media is {media.codec}, negotiated {stream.codec}")
            if media.clock_rate != stream.clock_rate:
                raise ValueError(
                    f"prepared media at {media.clock_rate} Hz, negotiated {stream.clock_rate} Hz"
                )
        was_sending = self._started and self.direction.sends
        self.negotiated = stream
        self.direction = stream.direction
        self.clock_rate = stream.clock_rate
        self._rtp_addr = (str(address), stream.remote_rtp_port)
        self._rtcp_addr = (str(rtcp_address), stream.remote_rtcp_port)
        if self._sockets is not None:
            rtp = self._sockets.rtp
            try:
                rtp.connect(self._rtp_addr)
            except OSError as error:
                raise ValueError(
                    f"cannot send RTP to {address}:{stream.remote_rtp_port}: "
                    f"{error.strerror or error}"
                ) from None
            self._rtp_send = rtp.send
            # The C send path writes to the descriptor itself (a test's fake: _rtp_send).
            self._rtp_fd = rtp.fileno() if isinstance(rtp, socket.socket) else -1
        self.receiver.enabled = stream.direction.receives
        self.receiver.forget_payload_types()
        if self._started:
            self._receiving(stream.direction.receives, self.reactor.seconds())
        if media is not None:
            if media is not self.media and self._started:
                # A codec change mid-call: the next packet keeps its due time and timestamp.
                self._rebase(self._start + self._mts * self._inv_rate)
            self.media = media
            self._payloads = tuple(media.payloads)
            self._incs = tuple(media.ts_increments)
            self._n = media.packets
            self._second = tuple(media.second_bytes(stream.payload_type))
            self._index %= self._n
        self._inv_rate = 1.0 / stream.clock_rate
        self._due = self._start + self._mts * self._inv_rate
        if self._started:
            sends = stream.direction.sends
            if sends and not was_sending:
                self._rebase(self.reactor.seconds())
                self.pacer.add(self)
            elif was_sending and not sends:
                self.pacer.remove(self)

    def _rebase(self, start: float) -> None:
        """Restart the media clock at ``start``, the timestamp continuing where it was."""
        self._ts0 = (self._ts0 + self._mts) & _U32
        self._mts = 0
        self._index = 0
        self._start = start
        self._due = start

    # --- running ------------------------------------------------------------------------

    def start(self) -> None:
        """Start sending (if the direction sends) and the RTCP timer."""
        if self._started or self._stopped:
            return
        if self.negotiated is None or self._sockets is None:
            raise ValueError("stream not opened and configured")
        self._started = True
        self._start = self.reactor.seconds()
        self._started_at = self._start
        self._receiving(self.direction.receives, self._start)
        self._due = self._start + self._mts * self._inv_rate
        if self.direction.sends:
            self.pacer.add(self)
        delay = randomized_interval(self.rtcp_interval / 2, self._rng)  # 6.2: initial half
        self._rtcp_call = self.reactor.callLater(delay, self._rtcp_timer)

    def stop(self) -> defer.Deferred[None]:
        """Stop sending, send RTCP BYE, close both sockets and give the ports back.

        Idempotent; returns :attr:`closed`, which fires once the sockets are closed and the
        pair is released.
        """
        if self._stopped:
            return self.closed
        self._stopped = True
        self._stopped_at = self.reactor.seconds()
        self.pacer.remove(self)
        if self._rtcp_call is not None and self._rtcp_call.active():
            self._rtcp_call.cancel()
        self._rtcp_call = None
        if self._started:
            self._send_rtcp(bye=True)
        self._started = False
        sockets, self._sockets = self._sockets, None
        self._rtp_send = self._rtcp_sendto = None
        self._rtp_fd = self.receiver._fd = -1
        if sockets is not None:
            for sock in sockets:
                self.mux.remove(sock)
                sock.close()
            if self._allocator is not None and self.pair is not None:
                self._allocator.release(self.pair)
        self.closed.callback(None)
        return self.closed

    # --- PacedSource: the send hot path ---------------------------------------------------

    def first_due(self) -> float:
        """The first packet is due when the stream starts."""
        return self._due

    # pace(now) is SendState's (C), the hot path: one call per packet at load. It sends
    # every packet due by ``now`` (header: 0x80, the payload's M bit and PT, sequence
    # number, _ts0 + media time, SSRC; section 5.1) on the connected socket's descriptor,
    # counts it in ``sender`` or ``send_errors`` (the sequence number is used either way)
    # and its lateness in the pacer's bins, and returns the next due time; more than
    # ``max_late`` behind, or stopped, it calls _pace_behind.

    def _pace_behind(self, now: float) -> float:
        """More than ``max_late`` behind: skip to the newest overdue packet, then send it.

        Stalled (module doc): the overdue packets' media time passes unsent and the
        sequence number does not advance. Stopped inside a tick: nothing is sent, and the
        pacer drops the stream at the tick's end.
        """
        if self._rtp_send is None and self._rtp_fd < 0:
            return now + 1.0
        start = self._start
        inv_rate = self._inv_rate
        incs = self._incs
        n = self._n
        mts = self._mts
        i = self._index
        skipped = 0
        while start + (mts + incs[i]) * inv_rate <= now:
            mts += incs[i]
            i = i + 1 if i + 1 < n else 0
            skipped += 1
        self.skipped += skipped
        self.pacer.lateness.skipped += skipped
        self._mts = mts
        self._index = i
        self._due = start + mts * inv_rate
        return self.pace(now)

    # --- receiving ------------------------------------------------------------------------

    def _new_source(self, ssrc: int) -> ReceiverStats:
        stats = ReceiverStats(ssrc, self.clock_rate, min_sequential=1)
        self.receiver.stats[ssrc] = stats
        return stats

    def _new_payload(self, ssrc: int, pt: int) -> ReceiverStats | _PayloadCount:
        """The statistics a new SSRC and payload type feed: the media's (the negotiated
        payload type, either side's number; anything but comfort noise before the answer)
        or a count of what it is (RFC 4733 event, RFC 3389 comfort noise, other)."""
        neg = self.negotiated
        kind = "media"
        if pt == PT_CN:
            kind = "cn"
        elif neg is not None and pt not in (neg.local_payload_type, neg.payload_type):
            events = (neg.local_telephone_event_pt, neg.telephone_event_pt)
            kind = "event" if pt in events else "other"
        if kind == "media":
            return self.receiver.stats.get(ssrc) or self._new_source(ssrc)
        count = _PayloadCount(self.receiver.stats, ssrc, pt, kind)
        self.receiver.others.append(count)
        return count

    def _receiving(self, receives: bool, now: float) -> None:
        """The running stream's direction receives (or not) from ``now`` on."""
        if not receives:
            self._recv_since = None
        elif self._recv_since is None:
            self._recv_since = now
            self._ever_receiving = True

    def _check_source(self, ssrc: int, addr: Any) -> None:
        """Count a packet from elsewhere than the SDP said; log its SSRC once (RFC 4961).

        Before :meth:`configure` the second socket may also get the peer's own packets
        (nothing is connected yet): those are not strays.
        """
        if self.negotiated is None or tuple(addr[:2]) == self._rtp_addr:
            return
        self.stray_packets += 1
        if ssrc not in self._strays:
            self._strays.add(ssrc)
            self.log.info(
                "RTP source {ssrc:08x} sends from {source}, SDP said {expected}",
                ssrc=ssrc,
                source=f"{addr[0]}:{addr[1]}",
                expected=f"{self._rtp_addr[0]}:{self._rtp_addr[1]}",
            )

    def _read_rtcp(self, now: float) -> None:
        sock = self._sockets
        if sock is None:
            return
        try:
            data, addr = sock.rtcp.recvfrom(_RECV_SIZE)
        except OSError:
            return
        self.rtcp_received_datagram(data, addr, now)

    def rtcp_received_datagram(self, data: bytes, addr: Any, now: float) -> None:
        """Process one RTCP datagram that arrived at ``now`` (6.4: SR, RR, SDES, BYE)."""
        try:
            packets = parse_compound(data)
        except RtcpError:
            self.rtcp_invalid += 1
            return
        self.rtcp_received += 1
        stats = self.receiver.stats
        for packet in packets:
            if isinstance(packet, SenderReport):
                source = stats.get(packet.ssrc)
                if source is None:
                    source = self._new_source(packet.ssrc)
                source.on_sender_report(packet, now)
                self._take_blocks(packet.reports, now)
            elif isinstance(packet, ReceiverReport):
                self._take_blocks(packet.reports, now)
            elif isinstance(packet, SourceDescription):
                for chunk in packet.chunks:
                    cname = chunk.cname
                    if cname is not None:
                        self.remote_cnames[chunk.ssrc] = cname
            elif isinstance(packet, Bye):
                self.byes.update(packet.ssrcs)

    def _take_blocks(self, blocks: tuple[ReportBlock, ...], now: float) -> None:
        for block in blocks:
            if block.ssrc == self.ssrc:
                self.sender.on_report_block(block, now)

    # --- RTCP sending -----------------------------------------------------------------------

    def _rtcp_timer(self) -> None:
        self._rtcp_call = None
        self._send_rtcp(bye=False)
        if self._started:
            delay = randomized_interval(self.rtcp_interval, self._rng)
            self._rtcp_call = self.reactor.callLater(delay, self._rtcp_timer)

    @property
    def packets_sent(self) -> int:
        """RTP packets sent so far (send errors not counted)."""
        return self.sender.packets

    @property
    def octets_sent(self) -> int:
        """Their payload octets (RTP headers not counted, as the SR's octet count)."""
        return self.sender.octets

    def rtcp_compound(self, now: float, bye: bool = False) -> bytes:
        """The compound packet to send at ``now``: SR or RR, SDES CNAME, BYE (6.1)."""
        blocks = [s.report_block(now) for s in self.receiver.stats.values() if s.valid]
        first, extra = tuple(blocks[:31]), blocks[31:]
        report: SenderReport | ReceiverReport
        if self.direction.sends and self.sender.packets:
            rtp_now = self._ts0 + round((now - self._start) * self.clock_rate)
            report = self.sender.sender_report(now, rtp_now & _U32, first)
        else:
            report = ReceiverReport(self.ssrc, first)
        end = Bye((self.ssrc,)) if bye else None
        return build_compound(report, self.cname, end, extra)

    def _send_rtcp(self, bye: bool) -> None:
        sendto = self._rtcp_sendto
        if sendto is None or self.negotiated is None:
            return
        data = self.rtcp_compound(self.reactor.seconds(), bye)
        try:
            sendto(data, self._rtcp_addr)
        except OSError:
            self.send_errors += 1
            return
        self.rtcp_sent += 1

    # --- metrics -----------------------------------------------------------------------------

    def snapshot(self) -> StreamSnapshot:
        """Cumulative figures of this stream (no reset)."""
        media = [s for s in self.receiver.stats.values() if s.packets]
        sources = [s.snapshot() for s in media]
        main = max(sources, key=lambda s: s.packets, default=None)
        others = self.receiver.others
        expected = sum(s.expected for s in sources)
        missing = sum(max(s.missing, 0) for s in sources)
        loss_pct = jitter_ms = None
        if main is not None:
            loss_pct = 100.0 * missing / expected if expected else 0.0
            jitter_ms = main.jitter_ms
        main_ssrc = main.ssrc if main is not None else -1
        by_kind = {"event": 0, "cn": 0, "other": 0}
        for other in others:
            by_kind[other.kind] += other.packets
        other_ssrc = sum(s.packets for s in sources if s.ssrc != main_ssrc)
        other_ssrc += sum(o.packets for o in others if o.ssrc != main_ssrc)
        arrivals = [s._last_arrival for s in media]
        arrivals += [o.last_arrival for o in others if o.packets]
        state, stopped_at = self._media_state(max(arrivals, default=None))
        sender = self.sender
        rtt_mean = sender.rtt_mean
        neg = self.negotiated
        codec = neg.codec if neg is not None else ""
        ptime = float(neg.ptime) if neg is not None and neg.ptime else 20.0
        delay = r_factor = mos = None
        values = _emodel_values(codec, self.plc) if self.kind == "audio" and codec else None
        if values is not None and expected > 0 and loss_pct is not None:
            assert jitter_ms is not None
            delay = one_way_delay_ms(
                rtt_mean * 1000.0 if rtt_mean is not None else None, jitter_ms, ptime
            )
            rating = emodel.transmission_rating(
                delay_ms=delay, ie=values.ie, bpl=values.bpl, ppl=min(loss_pct, 100.0)
            )
            r_factor, mos = rating.r, rating.mos
        return StreamSnapshot(
            kind=self.kind,
            codec=codec,
            direction=self.direction.value,
            local_port=self.local_port,
            remote=f"{self._rtp_addr[0]}:{self._rtp_addr[1]}",
            ssrc=self.ssrc,
            remote_ssrcs=len({s.ssrc for s in sources} | {o.ssrc for o in others if o.packets}),
            packets_sent=sender.packets,
            bytes_sent=sender.octets + 12 * sender.packets,
            send_errors=self.send_errors,
            skipped=self.skipped,
            packets_received=sum(s.packets for s in sources) + sum(o.packets for o in others),
            bytes_received=sum(s.bytes for s in sources) + sum(o.bytes for o in others),
            expected=expected,
            lost=missing,
            loss_pct=loss_pct,
            jitter_ms=jitter_ms,
            out_of_order=sum(s.out_of_order for s in sources),
            duplicates=sum(s.duplicates for s in sources),
            stray_packets=self.stray_packets,
            rtt_ms=sender.rtt * 1000.0 if sender.rtt is not None else None,
            rtt_mean_ms=rtt_mean * 1000.0 if rtt_mean is not None else None,
            rtt_max_ms=sender.rtt_max * 1000.0 if sender.rtt_count else None,
            rtcp_sent=self.rtcp_sent,
            rtcp_received=self.rtcp_received,
            bye_received=bool(self.byes),
            delay_ms=delay,
            r_factor=r_factor,
            mos=mos,
            media_state=state,
            stopped_at_s=stopped_at,
            events_received=by_kind["event"],
            cn_received=by_kind["cn"],
            other_payload_received=by_kind["other"],
            other_ssrc_packets=other_ssrc,
            emodel=values.as_dict() if values is not None else None,
        )

    def _media_state(self, last: float | None) -> tuple[str, float | None]:
        """``media_state`` and ``stopped_at_s`` (see :data:`MEDIA_STATES`), for the RTP that
        last arrived at ``last`` (None: none ever)."""
        if not self._ever_receiving:
            return ("ok" if last is not None else "not_expected"), None
        final = self._stopped or not self._started
        now = self._stopped_at if self._stopped_at is not None else self.reactor.seconds()
        since = self._recv_since
        if last is not None:
            if since is not None and now - max(last, since) > MEDIA_TIMEOUT_S:
                started = self._started_at if self._started_at is not None else last
                return "stopped", round(max(0.0, last - started), 3)
            return "ok", None
        if not final and since is not None and now - since <= MEDIA_TIMEOUT_S:
            return "waiting", None
        report = self.sender.last_report
        if self.sender.packets and report is not None:
            return "one_way", None  # the peer reports receiving ours (RFC 3550 6.4.1)
        return "no_media", None
