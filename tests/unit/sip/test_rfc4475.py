"""RFC 4475 (SIP torture test messages): every message of sections 3.1.1 to 3.4, each with the
answer the RFC expects.

The messages are the RFC's, written here from its text: lines end in CRLF (the RFC's bodies
are counted that way: its Content-Length values match), ``<allOneLine>`` lines are joined,
``<repeat count=N>`` runs and ``<hex>`` octets are written with Python's own means (``"x" * N``,
``\\x00``).  Each message goes through the worker's real receive path: the transport layer's
``received`` (parse; a request that does not parse is answered 400/505 when a Via can route
the answer, else dropped), then :class:`SipStack` with callee endpoints registered whose
handler is the real :class:`IncomingCall` (180, then 200 with an SDP answer).  What went back
to the sender is recorded.

An outcome is the final status we send (``"400"``, ``"200"``...), ``"dropped"`` when nothing
goes back, and for a response ``"parsed"`` (well formed, then discarded by the stack: there
is no transaction for it) or ``"dropped"`` (the parser refused it).  Each case lists the
outcomes the RFC allows: where it says a rejection "is acceptable" and a liberal element
"may" accept, both are listed; where it says the element "should respond with" a code, only
that code (or dropping it, for a request whose Via is itself broken, since a response could
not be routed).  Never a 2xx where the RFC wants a rejection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.sip.call import IncomingCall
from callmeter.sip.framing import KeepAlive, StreamFramer, StreamFramingError
from callmeter.sip.message import SipParseError, SipRequest, SipResponse, parse_message
from callmeter.sip.stack import SipStack
from callmeter.sip.transaction import ServerInvite
from callmeter.sip.transport import Origin, SipTransportLayer, Target
from callmeter.sip.uri import AbsoluteUri, SipUri


def wire(head: str, body: bytes | str = b"") -> bytes:
    """The RFC's text with CRLF line ends: ``head`` is the start line and the headers, each
    line ending in a newline; the empty line is added; ``body`` follows (str bodies get CRLF
    line ends too)."""
    if isinstance(body, str):
        body = body.replace("\n", "\r\n").encode("utf-8")
    return (head + "\n").replace("\n", "\r\n").encode("utf-8") + body


def sdp(origin: str, connection: str | None = None, t: str = "0 0") -> str:
    """The SDP body most RFC 4475 messages carry (150 octets with 9-character addresses)."""
    return (
        "v=0\n"
        f"o=mhandley 29739 7272939 IN IP4 {origin}\n"
        "s=-\n"
        f"c=IN IP4 {connection or origin}\n"
        f"t={t}\n"
        "m=audio 49217 RTP/AVP 0 12\n"
        "m=video 3227 RTP/AVP 31\n"
        "a=rtpmap:31 LPC\n"
    )


# --- 3.1.1 Valid messages -------------------------------------------------------------------

# 3.1.1.1 A Short Tortuous INVITE (wsinv)
WSINV = wire(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
    "TO :\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\n'
    "  ;\n"
    "  tag = 98asjd8\n"
    "MaX-fOrWaRdS: 0068\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\n"
    "Content-Length   : 150\n"
    "cseq: 0009\n"
    "  INVITE\n"
    "Via  : SIP  /   2.0\n"
    " /UDP\n"
    "    192.0.2.2;branch=390skdjuw\n"
    "s :\n"
    "NewFangledHeader:   newfangled value\n"
    " continued newfangled value\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
    "Content-Type: application/sdp\n"
    "Route:\n"
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n"
    "  branch  =   z9hG4bK9ikj8  ,\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
    " z9hG4bK30239\n"
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\n'
    "      newvalue ;\n"
    "  secondparam ; q = 0.33\n",
    sdp("192.0.2.3", "192.0.2.4"),
)

# 3.1.1.2 Wide Range of Valid Characters (intmeth)
INTMETH_METHOD = "!interesting-Method0123456789_*+`.%indeed'~"
INTMETH = wire(
    f"{INTMETH_METHOD} sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n"
    'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" '
    "<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\n"
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>"
    ";fromParam''~+*_!.-%=\"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439\""
    ";tag=_token~1'+`*%!-.\n"
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n"
    f"CSeq: 139122385 {INTMETH_METHOD}\n"
    "Max-Forwards: 255\n"
    "extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb\n"
    "Content-Length: 0\n"
)

# 3.1.1.3 Valid Use of the % Escaping Mechanism (esc01)
ESC01 = wire(
    "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\n"
    "To: sip:%75se%72@example.com\n"
    "From: <sip:I%20have%20spaces@example.net>;tag=938\n"
    "Max-Forwards: 87\n"
    "i: esc01.239409asdfakjkn23onasd0-3234\n"
    "CSeq: 234234 INVITE\n"
    "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\n"
    "C: application/sdp\n"
    "Contact:\n"
    "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\n"
    "Content-Length: 150\n",
    sdp("192.0.2.1"),
)

# 3.1.1.4 Escaped Nulls in URIs (escnull)
ESCNULL = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:null-%00-null@example.com\n"
    "From: sip:null-%00-null@example.com;tag=839923423\n"
    "Max-Forwards: 70\n"
    "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\n"
    "CSeq: 14398234 REGISTER\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
    "Contact: <sip:%00@host5.example.com>\n"
    "Contact: <sip:%00%00@host5.example.com>\n"
    "L:0\n"
)

# 3.1.1.5 Use of % When It Is Not an Escape (esc02)
ESC02 = wire(
    "RE%47IST%45R sip:registrar.example.com SIP/2.0\n"
    'To: "%Z%45" <sip:resource@example.com>\n'
    'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\n'
    "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\n"
    "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\n"
    "CSeq: 29344 RE%47IST%45R\n"
    "Max-Forwards: 70\n"
    "Contact: <sip:alias1@host1.example.com>\n"
    "C%6Fntact: <sip:alias2@host2.example.com>\n"
    "Contact: <sip:alias3@host3.example.com>\n"
    "l: 0\n"
)

# 3.1.1.6 Message with No LWS between Display Name and < (lwsdisp)
LWSDISP = wire(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: caller<sip:caller@example.com>;tag=323\n"
    "Max-Forwards: 70\n"
    "Call-ID: lwsdisp.1234abcd@funky.example.com\n"
    "CSeq: 60 OPTIONS\n"
    "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
)

# 3.1.1.7 Long Values in Header Fields (longreq); the RFC writes the long runs with <repeat>.
LONG_CALLER = "amazinglylongcallername" * 5
LONG_TAG = "12" + "982" * 50 + "424"
LONG_BRANCH = "very" + "long" * 50 + "branchvalue"
LONGREQ = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    f'To: "I have a user name of {"extreme" * 10} proportion"'
    f"<sip:user@example.com:6000;unknownparam1=very{'long' * 20}value"
    f";longparam{'name' * 25}=shortvalue"
    f";very{'long' * 25}ParameterNameWithNoValue>\n"
    f"F: sip:{LONG_CALLER}@example.net;tag={LONG_TAG}"
    f";unknownheaderparam{'name' * 20}=unknowheaderparam{'value' * 15}"
    f";unknownValueless{'paramname' * 10}\n"
    f"Call-ID: longreq.one{'really' * 20}longcallid\n"
    "CSeq: 3882340 INVITE\n"
    f"Unknown-{'Long' * 20}-Name: unknown-{'long' * 20}-value; "
    f"unknown-{'long' * 20}-parameter-name = unknown-{'long' * 20}-parameter-value\n"
    "Via: SIP/2.0/TCP sip33.example.com\n"
    "v: SIP/2.0/TCP sip32.example.com\n"
    "V: SIP/2.0/TCP sip31.example.com\n"
    "Via: SIP/2.0/TCP sip30.example.com\n"
    "ViA: SIP/2.0/TCP sip29.example.com\n"
    "VIa: SIP/2.0/TCP sip28.example.com\n"
    "VIA: SIP/2.0/TCP sip27.example.com\n"
    "via: SIP/2.0/TCP sip26.example.com\n"
    "viA: SIP/2.0/TCP sip25.example.com\n"
    "vIa: SIP/2.0/TCP sip24.example.com\n"
    "vIA: SIP/2.0/TCP sip23.example.com\n"
    "V :  SIP/2.0/TCP sip22.example.com\n"
    "v :  SIP/2.0/TCP sip21.example.com\n"
    "V  : SIP/2.0/TCP sip20.example.com\n"
    "v  : SIP/2.0/TCP sip19.example.com\n"
    "Via : SIP/2.0/TCP sip18.example.com\n"
    "Via  : SIP/2.0/TCP sip17.example.com\n"
    + "".join(f"Via: SIP/2.0/TCP sip{n}.example.com\n" for n in range(16, 0, -1))
    + f"Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch={LONG_BRANCH}\n"
    "Max-Forwards: 70\n"
    f"Contact: <sip:{LONG_CALLER}@host5.example.net>\n"
    "Content-Type: application/sdp\n"
    "l: 150\n",
    sdp("192.0.2.1"),
)

# 3.1.1.8 Extra Trailing Octets in a UDP Datagram (dblreq)
DBLREQ = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:j.user@example.com;tag=43251j3j324\n"
    "Max-Forwards: 8\n"
    "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\n"
    "Contact: sip:j.user@host.example.com\n"
    "CSeq: 8 REGISTER\n"
    "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\n"
    "Content-Length: 0\n",
    "\n"
    "INVITE sip:joe@example.com SIP/2.0\n"
    "t: sip:joe@example.com\n"
    "From: sip:caller@example.net;tag=141334\n"
    "Max-Forwards: 8\n"
    "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.15").replace("m=video", "m =video"),
)

# 3.1.1.9 Semicolon-Separated Parameters in URI User Part (semiuri)
SEMIURI = wire(
    "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\n"
    "To: sip:j_user@example.com\n"
    "From: sip:caller@example.org;tag=33242\n"
    "Max-Forwards: 3\n"
    "Call-ID: semiuri.0ha0isndaksdj\n"
    "CSeq: 8 OPTIONS\n"
    "Accept: application/sdp, application/pkcs7-mime,\n"
    "        multipart/mixed, multipart/signed,\n"
    "        message/sip, message/sipfrag\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
)

# 3.1.1.10 Varied and Unknown Transport Types (transports)
TRANSPORTS = wire(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: <sip:caller@example.com>;tag=323\n"
    "Max-Forwards: 70\n"
    "Call-ID:  transports.kijh4akdnaqjkwendsasfdj\n"
    "Accept: application/sdp\n"
    "CSeq: 60 OPTIONS\n"
    "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\n"
    "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\n"
    "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\n"
    "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\n"
    "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\n"
    "l: 0\n"
)

# 3.1.1.11 Multipart MIME Message (mpart01).  The second part is binary (a DER blob the RFC
# gives in <hex>); here it is a stand-in of the same size with NUL, CR and LF octets in it,
# which is what the message tests: framing by Content-Length, not by the octets' meaning.
MPART01_TEXT_PART = (
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
)
MPART01_END = b"\r\n--7a9cbec02ceef655--\r\n"
MPART01_BODY = (
    MPART01_TEXT_PART
    + (bytes(range(256)) * 2)[: 553 - len(MPART01_TEXT_PART) - len(MPART01_END)]
    + MPART01_END
)
MPART01 = wire(
    "MESSAGE sip:kumiko@example.org SIP/2.0\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\n"
    "Max-Forwards: 70\n"
    "Route: <sip:127.0.0.1:5080>\n"
    "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813"
    "gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\n"
    "Contact: <sip:fluffy@127.0.0.1:5070>\n"
    "To: <sip:kumiko@example.org>\n"
    "From: <sip:fluffy@example.com>;tag=2fb0dcc9\n"
    "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\n"
    "CSeq: 1 MESSAGE\n"
    "Content-Transfer-Encoding: binary\n"
    "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\n"
    "Date: Sat, 15 Oct 2005 04:44:56 GMT\n"
    "User-Agent: SIPimp.org/0.2.5 (curses)\n"
    "Content-Length: 553\n",
    MPART01_BODY,
)

# 3.1.1.12 Unusual Reason Phrase (unreason)
UNREASON_PHRASE = (
    "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e"
    "\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441"
    "\u0442\u043e\u0435"
)
UNREASON = wire(
    f"SIP/2.0 200 {UNREASON_PHRASE}\n"
    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
    "Call-ID: unreason.1234ksdfak3j2erwedfsASdf\n"
    "CSeq: 35 INVITE\n"
    "From: sip:user@example.com;tag=11141343\n"
    "To: sip:user@example.edu;tag=2229\n"
    "Content-Length: 154\n"
    "Content-Type: application/sdp\n"
    "Contact: <sip:user@host198.example.com>\n",
    sdp("192.0.2.198"),
)

# 3.1.1.13 Empty Reason Phrase (noreason): the SP after the code is there.
NOREASON = wire(
    "SIP/2.0 100\x20\n"
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
    "Call-ID: noreason.asndj203insdf99223ndf\n"
    "CSeq: 35 INVITE\n"
    "From: <sip:user@example.com>;tag=39ansfi3\n"
    "To: <sip:user@example.edu>;tag=902jndnke3\n"
    "Content-Length: 0\n"
    "Contact: <sip:user@host105.example.com>\n"
)

# --- 3.1.2 Invalid messages -----------------------------------------------------------------

# 3.1.2.1 Extraneous Header Field Separators (badinv01)
BADINV01 = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=134161461246\n"
    "Max-Forwards: 7\n"
    "Call-ID: badinv01.0ha0isndaksdjasdf3234nas\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\n"
    'Contact: "Joe" <sip:joe@example.org>;;;;\n'
    "Content-Length: 152\n"
    "Content-Type: application/sdp\n",
    sdp("192.0.2.15"),
)

# 3.1.2.2 Content Length Larger Than Message (clerr)
CLERR = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    "Max-Forwards: 80\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=93942939o2\n"
    "Contact: <sip:caller@hungry.example.net>\n"
    "Call-ID: clerr.0ha0isndaksdjweiafasdk3\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 9999\n",
    sdp("192.0.2.155"),
)

# 3.1.2.3 Negative Content-Length (ncl)
NCL = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    "Max-Forwards: 254\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=32394234\n"
    "Call-ID: ncl.0ha0isndaksdj2193423r542w35\n"
    "CSeq: 0 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\n"
    "Contact: <sip:caller@example53.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: -999\n",
    sdp("192.0.2.53"),
)

# 3.1.2.4 Request Scalar Fields with Overlarge Values (scalar02)
SCALAR02 = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\n"
    "To: <sip:user@example.com>\n"
    "From: <sip:user@example.com>;tag=239232jh3\n"
    "CSeq: 36893488147419103232 REGISTER\n"
    "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\n"
    "Max-Forwards: 300\n"
    f"Expires: 1{'0' * 100}\n"
    "Contact: <sip:user@host129.example.com>\n"
    "  ;expires=280297596632815\n"
    "Content-Length: 0\n"
)

# 3.1.2.5 Response Scalar Fields with Overlarge Values (scalarlg)
SCALARLG = wire(
    "SIP/2.0 503 Service Unavailable\n"
    "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\n"
    "To: <sip:user@example.com>\n"
    "From: <sip:other@example.net>;tag=2easdjfejw\n"
    "CSeq: 9292394834772304023312 OPTIONS\n"
    "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\n"
    "Retry-After: 949302838503028349304023988\n"
    'Warning: 1812 overture "In Progress"\n'
    "Content-Length: 0\n"
)

# 3.1.2.6 Unterminated Quoted String in Display Name (quotbal)
QUOTBAL = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    'To: "Mr. J. User <sip:j.user@example.com>\n'
    "From: sip:caller@example.net;tag=93334\n"
    "Max-Forwards: 10\n"
    "Call-ID: quotbal.aksdj\n"
    "Contact: <sip:caller@host59.example.net>\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 152\n",
    sdp("192.0.2.15"),
)

# 3.1.2.7 <> Enclosing Request-URI (ltgtruri)
LTGTRURI = wire(
    "INVITE <sip:user@example.com> SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=39291\n"
    "Max-Forwards: 23\n"
    "Call-ID: ltgtruri.1@192.0.2.5\n"
    "CSeq: 1 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.5\n"
    "Contact: <sip:caller@host5.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 159\n",
    sdp("192.0.2.5", t="3149328700 0"),
)

# 3.1.2.8 Malformed SIP Request-URI (embedded LWS) (lwsruri)
LWSRURI = wire(
    "INVITE sip:user@example.com; lr SIP/2.0\n"
    "To: sip:user@example.com;tag=3xfe-9921883-z9f\n"
    "From: sip:caller@example.net;tag=231413434\n"
    "Max-Forwards: 5\n"
    "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\n"
    "CSeq: 2130706432 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\n"
    "Contact: <sip:caller@host1.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 159\n",
    sdp("192.0.2.1", t="3149328700 0"),
)

# 3.1.2.9 Multiple SP Separating Request-Line Elements (lwsstart)
LWSSTART = wire(
    "INVITE  sip:user@example.com  SIP/2.0\n"
    "Max-Forwards: 8\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=8814\n"
    "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\n"
    "CSeq: 1893884 INVITE\n"
    "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\n"
    "Contact: <sip:caller@host1.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n",
    sdp("192.0.2.1"),
)

# 3.1.2.10 SP Characters at End of Request-Line (trws)
TRWS = wire(
    "OPTIONS sip:remote-target@example.com SIP/2.0\x20\x20\n"
    "Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093\n"
    "To: <sip:remote-target@example.com>\n"
    "From: <sip:local-resource@example.com>;tag=329429089\n"
    "Call-ID: trws.oicu34958239neffasdhr2345r\n"
    "Accept: application/sdp\n"
    "CSeq: 238923 OPTIONS\n"
    "Max-Forwards: 70\n"
    "Content-Length: 0\n"
)

# 3.1.2.11 Escaped Headers in SIP Request-URI (escruri)
ESCRURI = wire(
    "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=341518\n"
    "Max-Forwards: 7\n"
    "Contact: <sip:caller@host39923.example.net>\n"
    "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\n"
    "CSeq: 149209342 INVITE\n"
    "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n",
    sdp("192.0.2.1"),
)

# 3.1.2.12 Invalid Time Zone in Date Header Field (baddate)
BADDATE = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=2234923\n"
    "Max-Forwards: 70\n"
    "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\n"
    "CSeq: 1392934 INVITE\n"
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
    "Date: Fri, 01 Jan 2010 16:00:00 EST\n"
    "Contact: <sip:caller@host5.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n",
    sdp("192.0.2.5"),
)

# 3.1.2.13 Failure to Enclose name-addr URI in <> (regbadct)
REGBADCT = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:user@example.com;tag=998332\n"
    "Max-Forwards: 70\n"
    "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\n"
    "CSeq: 1 REGISTER\n"
    "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\n"
    "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n"
    "l: 0\n"
)

# 3.1.2.14 Spaces within addr-spec (badaspec)
BADASPEC = wire(
    "OPTIONS sip:user@example.org SIP/2.0\n"
    "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\n"
    "Max-Forwards: 70\n"
    'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423\n'
    'To: "Watson, Thomas" < sip:t.watson@example.org >\n'
    "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\n"
    "Accept: application/sdp\n"
    "CSeq: 3923239 OPTIONS\n"
    "l: 0\n"
)

# 3.1.2.15 Non-token Characters in Display Name (baddn)
BADDN = wire(
    "OPTIONS sip:t.watson@example.org SIP/2.0\n"
    "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\n"
    "Max-Forwards:      70\n"
    "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n"
    "To:      Watson, Thomas <sip:t.watson@example.org>\n"
    "Call-ID: baddn.31415@c.example.com\n"
    "Accept: application/sdp\n"
    "CSeq:    3923239 OPTIONS\n"
    "l: 0\n"
)

# 3.1.2.16 Unknown Protocol Version (badvers)
BADVERS = wire(
    "OPTIONS sip:t.watson@example.org SIP/7.0\n"
    "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\n"
    "Max-Forwards:     70\n"
    "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\n"
    "To:      T. Watson <sip:t.watson@example.org>\n"
    "Call-ID: badvers.31417@c.example.com\n"
    "CSeq:    1 OPTIONS\n"
    "l: 0\n"
)

# 3.1.2.17 Start Line and CSeq Method Mismatch (mismatch01)
MISMATCH01 = wire(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=34525\n"
    "Max-Forwards: 6\n"
    "Call-ID: mismatch01.dj0234sxdfl3\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
)

# 3.1.2.18 Unknown Method with CSeq Method Mismatch (mismatch02)
MISMATCH02 = wire(
    "NEWMETHOD sip:user@example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=34525\n"
    "Max-Forwards: 6\n"
    "Call-ID: mismatch02.dj0234sxdfl3\n"
    "CSeq: 8 INVITE\n"
    "Contact: <sip:caller@host.example.net>\n"
    "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\n"
    "Content-Type: application/sdp\n"
    "l: 138\n",
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.1\n"
    "c=IN IP4 192.0.2.1\n"
    "m=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\n"
    "a=rtpmap:31 LPC\n",
)

# 3.1.2.19 Overlarge Response Code (bigcode)
BIGCODE = wire(
    "SIP/2.0 4294967301 better not break the receiver\n"
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
    "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\n"
    "CSeq: 353494 INVITE\n"
    "From: <sip:user@example.com>;tag=39ansfi3\n"
    "To: <sip:user@example.edu>;tag=902jndnke3\n"
    "Content-Length: 0\n"
    "Contact: <sip:user@host105.example.com>\n"
)

# --- 3.2 Transaction layer semantics --------------------------------------------------------

# 3.2.1 Missing Transaction Identifier (badbranch)
BADBRANCH = wire(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.org;tag=33242\n"
    "Max-Forwards: 3\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\n"
    "Accept: application/sdp\n"
    "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\n"
    "CSeq: 8 OPTIONS\n"
    "l: 0\n"
)

# --- 3.3 Application layer semantics --------------------------------------------------------

# 3.3.1 Missing Required Header Fields (insuf)
INSUF = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    "CSeq: 193942 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\n"
    "Content-Type: application/sdp\n"
    "l: 152\n",
    sdp("192.0.2.95"),
)

# 3.3.2 Request-URI with Unknown Scheme (unkscm)
UNKSCM = wire(
    "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=384\n"
    "Max-Forwards: 3\n"
    "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\n"
    "CSeq: 3923423 OPTIONS\n"
    "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n"
    "Content-Length: 0\n"
)

# 3.3.3 Request-URI with Known but Atypical Scheme (novelsc)
NOVELSC = wire(
    "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=384\n"
    "Max-Forwards: 3\n"
    "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34\n"
    "CSeq: 3923423 OPTIONS\n"
    "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n"
    "Content-Length: 0\n"
)

# 3.3.4 Unknown URI Schemes in Header Fields (unksm2)
UNKSM2 = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: isbn:2983792873\n"
    "From: <http://www.example.com>;tag=3234233\n"
    "Call-ID: unksm2.daksdj@hyphenated-host.example.com\n"
    "CSeq: 234902 REGISTER\n"
    "Max-Forwards: 70\n"
    "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\n"
    "Contact: <name:John_Smith>\n"
    "l: 0\n"
)

# 3.3.5 Proxy-Require and Require (bext01)
BEXT01 = wire(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:j_user@example.com\n"
    "From: sip:caller@example.net;tag=242etr\n"
    "Max-Forwards: 6\n"
    "Call-ID: bext01.0ha0isndaksdj\n"
    "Require: nothingSupportsThis, nothingSupportsThisEither\n"
    "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n"
    "CSeq: 8 OPTIONS\n"
    "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw\n"
    "Content-Length: 0\n"
)

# 3.3.6 Unknown Content-Type (invut)
INVUT = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    "Contact: <sip:caller@host5.example.net>\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=8392034\n"
    "Max-Forwards: 70\n"
    "Call-ID: invut.0ha0isndaksdjadsfij34n23d\n"
    "CSeq: 235448 INVITE\n"
    "Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw\n"
    "Content-Type: application/unknownformat\n"
    "Content-Length: 40\n",
    '<audio>\n <pcmu port="443"/>\n</audio>\n',
)

# 3.3.7 Unknown Authorization Scheme (regaut01)
REGAUT01 = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:j.user@example.com;tag=87321hj23128\n"
    "Max-Forwards: 8\n"
    "Call-ID: regaut01.0ha0isndaksdj\n"
    "CSeq: 9338 REGISTER\n"
    "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw\n"
    "Authorization: NoOneKnowsThisScheme opaque-data=here\n"
    "Content-Length:0\n"
)

# 3.3.8 Multiple Values in Single Value Required Fields (multi01)
MULTI01 = wire(
    "INVITE sip:user@company.com SIP/2.0\n"
    "Contact: <sip:caller@host25.example.net>\n"
    "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\n"
    "Max-Forwards: 70\n"
    "CSeq: 5 INVITE\n"
    "Call-ID: multi01.98asdh@192.0.2.1\n"
    "CSeq: 59 INVITE\n"
    "Call-ID: multi01.98asdh@192.0.2.2\n"
    "From: sip:caller@example.com;tag=3413415\n"
    "To: sip:user@example.com\n"
    "To: sip:other@example.net\n"
    "From: sip:caller@example.net;tag=2923420123\n"
    "Content-Type: application/sdp\n"
    "l: 154\n"
    "Contact: <sip:caller@host36.example.net>\n"
    "Max-Forwards: 5\n",
    sdp("192.0.2.25") + "\n",  # the RFC's body ends with an empty line: 154 octets
)

# 3.3.9 Multiple Content-Length Values (mcl01)
MCL01 = wire(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\n"
    "To: sip:user@example.com\n"
    "From: sip:other@example.net;tag=3923942\n"
    "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\n"
    "CSeq: 15932 OPTIONS\n"
    "Content-Length: 13\n"
    "Max-Forwards: 60\n"
    "Content-Length: 5\n"
    "Content-Type: text/plain\n",
    "There's no way to know how many octets are supposed to be here.\n",
)

# 3.3.10 200 OK Response with Broadcast Via Header Field Value (bcast)
BCAST = wire(
    "SIP/2.0 200 OK\n"
    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
    "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\n"
    "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\n"
    "CSeq: 35 INVITE\n"
    "From: sip:user@example.com;tag=11141343\n"
    "To: sip:user@example.edu;tag=2229\n"
    "Content-Length: 154\n"
    "Content-Type: application/sdp\n"
    "Contact: <sip:user@host28.example.com>\n",
    sdp("192.0.2.198"),
)

# 3.3.11 Max-Forwards of Zero (zeromf)
ZEROMF = wire(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=3ghsd41\n"
    "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\n"
    "CSeq: 39234321 OPTIONS\n"
    "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\n"
    "Max-Forwards: 0\n"
    "Content-Length: 0\n"
)

# 3.3.12 REGISTER with a Contact Header Parameter (cparam01)
CPARAM01 = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
    "Max-Forwards: 70\n"
    "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\n"
    "To: sip:watson@example.com\n"
    "Call-ID: cparam01.70710@saturn.example.com\n"
    "CSeq: 2 REGISTER\n"
    "Contact: sip:+19725552222@gw1.example.net;unknownparam\n"
    "l: 0\n"
)

# 3.3.13 REGISTER with a url-parameter (cparam02)
CPARAM02 = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
    "Max-Forwards: 70\n"
    "From: sip:watson@example.com;tag=838293\n"
    "To: sip:watson@example.com\n"
    "Call-ID: cparam02.70710@saturn.example.com\n"
    "CSeq: 3 REGISTER\n"
    "Contact: <sip:+19725552222@gw1.example.net;unknownparam>\n"
    "l: 0\n"
)

# 3.3.14 REGISTER with a URL Escaped Header (regescrt)
REGESCRT = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:user@example.com;tag=8\n"
    "Max-Forwards: 70\n"
    "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\n"
    "CSeq: 14398234 REGISTER\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
    "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\n"
    "L:0\n"
)

# 3.3.15 Unacceptable Accept Offering (sdp01)
SDP01 = wire(
    "INVITE sip:user@example.com SIP/2.0\n"
    "To: sip:j_user@example.com\n"
    "Contact: <sip:caller@host15.example.net>\n"
    "From: sip:caller@example.net;tag=234\n"
    "Max-Forwards: 5\n"
    "Call-ID: sdp01.ndaksdj9342dasdd\n"
    "Accept: text/nobodyKnowsThis\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw\n"
    "Content-Length: 150\n"
    "Content-Type: application/sdp\n",
    sdp("192.0.2.5"),
)

# --- 3.4 Backward compatibility -------------------------------------------------------------

# 3.4.1 INVITE with RFC 2543 Syntax (inv2543): no branch, no From tag, no Content-Length,
# no Max-Forwards (and no Contact).
INV2543 = wire(
    "INVITE sip:UserB@example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP iftgw.example.com\n"
    "From: <sip:+13035551111@ift.client.example.net;user=phone>\n"
    "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\n"
    "To: sip:+16505552222@ss1.example.net;user=phone\n"
    "Call-ID: inv2543.1717@ift.client.example.com\n"
    "CSeq: 56 INVITE\n"
    "Content-Type: application/sdp\n",
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.5\n"
    "s=-\n"
    "c=IN IP4 192.0.2.5\n"
    "t=0 0\n"
    "m=audio 49217 RTP/AVP 0\n",
)


# --- the worker's receive path, recorded ----------------------------------------------------

ANSWER_SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.100\r\ns=-\r\nc=IN IP4 192.0.2.100\r\nt=0 0\r\n"
ENDPOINTS = ("user", "vivekg", "UserB", "sips:user@example.com", "j.user", "j_user")


class FakeMedia:
    """A MediaSession that accepts any offer."""

    def local_offer(self) -> bytes:
        return ANSWER_SDP

    def apply_answer(self, answer: bytes) -> None:
        pass

    def answer_offer(self, offer: bytes) -> bytes:
        return ANSWER_SDP

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class RecordingLayer(SipTransportLayer):
    """The real transport layer's receive path; what it would send is recorded instead."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock, "192.0.2.100", self._nobody)
        self.ports = {"udp": 5060}
        self.replies: list[SipResponse] = []
        self.sent: list[Any] = []

    @staticmethod
    def _nobody(message: Any, origin: Origin) -> None:
        raise AssertionError("no stack attached")

    def reply(self, response: SipResponse, origin: Origin, on_error: Any = None) -> None:
        self.replies.append(response)

    def send(self, message: Any, target: Target, on_error: Any = None) -> None:
        self.sent.append(message)


@dataclass
class Received:
    """What the worker did with one datagram."""

    replies: list[SipResponse]
    sent: list[Any]
    calls: list[IncomingCall] = field(default_factory=list)
    message: SipRequest | SipResponse | None = None

    @property
    def statuses(self) -> list[int]:
        return [reply.status for reply in self.replies]

    @property
    def final(self) -> SipResponse | None:
        return next((reply for reply in self.replies if reply.status >= 200), None)

    @property
    def outcome(self) -> str:
        if self.message is not None and isinstance(self.message, SipResponse):
            return "parsed"
        final = self.final
        return "dropped" if final is None else str(final.status)


def receive(data: bytes) -> Received:
    """Feed one UDP datagram to a worker with callee endpoints and run its clock a while."""
    clock = Clock()
    layer = RecordingLayer(clock)
    stack = SipStack(clock, layer, "192.0.2.100")
    result = Received(layer.replies, layer.sent)

    def callee(user: str) -> Callable[[SipRequest, ServerInvite, Origin], IncomingCall]:
        def handler(request: SipRequest, transaction: ServerInvite, origin: Origin) -> Any:
            call = IncomingCall(stack, FakeMedia(), request, transaction, origin, user=user)
            result.calls.append(call)
            call.start()
            return call

        return handler

    for user in ENDPOINTS:
        stack.add_endpoint(user, callee(user))

    def seen(message: SipRequest | SipResponse, origin: Origin) -> None:
        result.message = message
        stack.on_message(message, origin)

    layer.on_message = seen
    layer.received(data, Origin("udp", "192.0.2.2", 5060))
    clock.advance(0)
    clock.advance(0.1)
    return result


@dataclass(frozen=True)
class Case:
    section: str
    name: str
    data: bytes
    expected: frozenset[str]
    rfc_says: str

    def __str__(self) -> str:
        return f"{self.section} {self.name}"


def case(section: str, name: str, data: bytes, expected: str, rfc_says: str) -> Case:
    return Case(section, name, data, frozenset(expected.split()), rfc_says)


CASES = [
    case("3.1.1.1", "A Short Tortuous INVITE", WSINV, "481",
         "well formed; it has a To tag, so a UAS without that dialog answers 481"),
    case("3.1.1.2", "Wide Range of Valid Characters", INTMETH, "501",
         "well formed; an endpoint answers 501 with Allow"),
    case("3.1.1.3", "Valid Use of the % Escaping Mechanism", ESC01, "200",
         "well formed; %HH are the characters they encode"),
    case("3.1.1.4", "Escaped Nulls in URIs", ESCNULL, "405",
         "well formed; two distinct Contacts (we are no registrar: 405)"),
    case("3.1.1.5", "Use of % When It Is Not an Escape", ESC02, "501",
         "well formed; an unknown method: 501"),
    case("3.1.1.6", "Message with No LWS between Display Name and <", LWSDISP, "200",
         "accept as well formed"),
    case("3.1.1.7", "Long Values in Header Fields", LONGREQ, "200", "well formed"),
    case("3.1.1.8", "Extra Trailing Octets in a UDP Datagram", DBLREQ, "405",
         "handle the REGISTER, ignore the extra octets"),
    case("3.1.1.9", "Semicolon-Separated Parameters in URI User Part", SEMIURI, "200",
         "well formed; user part is user;par=u@example.net"),
    case("3.1.1.10", "Varied and Unknown Transport Types", TRANSPORTS, "200", "well formed"),
    case("3.1.1.11", "Multipart MIME Message", MPART01, "405 415",
         "well formed even if multipart is not supported (MESSAGE: 405)"),
    case("3.1.1.12", "Unusual Reason Phrase", UNREASON, "parsed", "a parser must accept it"),
    case("3.1.1.13", "Empty Reason Phrase", NOREASON, "parsed", "a parser must accept it"),
    case("3.1.2.1", "Extraneous Header Field Separators", BADINV01, "400 dropped",
         "400 (its Via is the broken field: nothing can route an answer)"),
    case("3.1.2.2", "Content Length Larger Than Message", CLERR, "400", "400 over UDP"),
    case("3.1.2.3", "Negative Content-Length", NCL, "400", "an error"),
    case("3.1.2.4", "Request Scalar Fields with Overlarge Values", SCALAR02, "400",
         "400 for the CSeq"),
    case("3.1.2.5", "Response Scalar Fields with Overlarge Values", SCALARLG, "dropped",
         "discard it"),
    case("3.1.2.6", "Unterminated Quoted String in Display Name", QUOTBAL, "400", "400"),
    case("3.1.2.7", "<> Enclosing Request-URI", LTGTRURI, "400", "400"),
    case("3.1.2.8", "Malformed SIP Request-URI (embedded LWS)", LWSRURI, "400", "400"),
    case("3.1.2.9", "Multiple SP Separating Request-Line Elements", LWSSTART, "400 200",
         "reject as malformed, or ignore the extra SP"),
    case("3.1.2.10", "SP Characters at End of Request-Line", TRWS, "400 200",
         "reject as malformed, or ignore the extra SP"),
    case("3.1.2.11", "Escaped Headers in SIP Request-URI", ESCRURI, "400 200",
         "400, or ignore the headers (a UAS applies none of them)"),
    case("3.1.2.12", "Invalid Time Zone in Date Header Field", BADDATE, "200 400",
         "may reject, should not unless Date matters: we ignore Date"),
    case("3.1.2.13", "Failure to Enclose name-addr URI in <>", REGBADCT, "400", "400"),
    case("3.1.2.14", "Spaces within addr-spec", BADASPEC, "400 200",
         "400, or ignore the spaces"),
    case("3.1.2.15", "Non-token Characters in Display Name", BADDN, "400", "400"),
    case("3.1.2.16", "Unknown Protocol Version", BADVERS, "505", "505"),
    case("3.1.2.17", "Start Line and CSeq Method Mismatch", MISMATCH01, "400", "400"),
    case("3.1.2.18", "Unknown Method with CSeq Method Mismatch", MISMATCH02, "501",
         "501 (400 acceptable)"),
    case("3.1.2.19", "Overlarge Response Code", BIGCODE, "dropped", "drop it"),
    case("3.2.1", "Missing Transaction Identifier", BADBRANCH, "200 400",
         "400, or fall back to RFC 2543 transaction matching"),
    case("3.3.1", "Missing Required Header Fields", INSUF, "400", "400"),
    case("3.3.2", "Request-URI with Unknown Scheme", UNKSCM, "416", "416"),
    case("3.3.3", "Request-URI with Known but Atypical Scheme", NOVELSC, "416 404",
         "416 (or 404 when some such URIs are known)"),
    case("3.3.4", "Unknown URI Schemes in Header Fields", UNKSM2, "405",
         "well formed (no 400); we are no registrar: 405"),
    case("3.3.5", "Proxy-Require and Require", BEXT01, "420",
         "420 with Unsupported listing the Require tags (a UAS)"),
    case("3.3.6", "Unknown Content-Type", INVUT, "415", "an endpoint answers 415"),
    case("3.3.7", "Unknown Authorization Scheme", REGAUT01, "405",
         "an endpoint that is not a registrar: 405"),
    case("3.3.8", "Multiple Values in Single Value Required Fields", MULTI01, "400", "400"),
    case("3.3.9", "Multiple Content-Length Values", MCL01, "400", "an error"),
    case("3.3.10", "200 OK Response with Broadcast Via Header Field Value", BCAST, "parsed",
         "well formed; an endpoint discards it"),
    case("3.3.11", "Max-Forwards of Zero", ZEROMF, "200",
         "an endpoint processes it (483 is a proxy's answer)"),
    case("3.3.12", "REGISTER with a Contact Header Parameter", CPARAM01, "405",
         "unknownparam is a contact-param (we are no registrar: 405)"),
    case("3.3.13", "REGISTER with a url-parameter", CPARAM02, "405",
         "unknownparam is a url-parameter (we are no registrar: 405)"),
    case("3.3.14", "REGISTER with a URL Escaped Header", REGESCRT, "405",
         "well formed (we are no registrar: 405)"),
    case("3.3.15", "Unacceptable Accept Offering", SDP01, "406 400", "406 (or 400)"),
    case("3.4.1", "INVITE with RFC 2543 Syntax", INV2543, "200",
         "accept: a call answered (180, 200)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "rfc_case",
    [pytest.param(c, id=c.section) for c in CASES],
)
def test_the_worker_answers_as_rfc_4475_expects(rfc_case: Case) -> None:
    received = receive(rfc_case.data)
    assert received.outcome in rfc_case.expected, (
        f"{rfc_case}: RFC 4475 says {rfc_case.rfc_says}; we answered {received.statuses}"
    )
    assert len(received.replies) <= 3  # one transaction's answers, nothing for extra octets
    if isinstance(received.message, SipResponse):
        assert received.replies == [] and received.sent == []  # a stray response: discarded


def test_every_section_is_covered() -> None:
    sections = [c.section for c in CASES]
    assert len(sections) == len(set(sections))
    assert sections == (
        [f"3.1.1.{n}" for n in range(1, 14)]
        + [f"3.1.2.{n}" for n in range(1, 20)]
        + ["3.2.1"]
        + [f"3.3.{n}" for n in range(1, 16)]
        + ["3.4.1"]
    )


# --- the fields the RFC says a parser must get right ----------------------------------------


def request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def response(data: bytes) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


def test_wsinv_folding_escapes_compact_forms_and_unknown_headers() -> None:
    """3.1.1.1: folding everywhere, LWS around separators, leading zeros, unknown fields."""
    msg = request(WSINV)
    assert msg.method == "INVITE"
    assert isinstance(msg.uri, SipUri) and msg.uri.user == "vivekg"
    assert msg.uri.params == (("unknownparam", None),)
    assert msg.headers.to_addr().tag == "1918181833n"
    sender = msg.headers.from_addr()
    assert sender.display_name == 'J Rosenberg \\"' and sender.tag == "98asjd8"
    assert msg.headers.max_forwards() == 68
    assert (msg.headers.cseq().number, msg.headers.cseq().method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.headers.vias()] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.headers.contacts()
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert isinstance(contact.uri, SipUri) and contact.uri.params == ()
    (route,) = msg.headers.routes()
    assert isinstance(route.uri, SipUri) and route.uri.lr
    assert len(msg.body) == 150


def test_intmeth_token_and_word_characters() -> None:
    """3.1.1.2: % is no escape in a method or Call-ID; quoted NUL/BEL/DEL; UTF-8 values."""
    msg = request(INTMETH)
    assert msg.method == INTMETH_METHOD and msg.headers.cseq().method == INTMETH_METHOD
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.headers.top_via().branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.headers.to_addr().display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    sender = msg.headers.from_addr()
    assert sender.display_name == "token1~` token2'+_ token3*%!.-"
    assert sender.tag == "_token~1'+`*%!-."
    assert (
        sender.get_param("fromParam''~+*_!.-%")
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert msg.headers.call_id() == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert msg.headers.max_forwards() == 255


def test_esc01_escapes_mean_the_characters_but_only_once() -> None:
    """3.1.1.3: %HH decoded in user parts and URI parameters, never recursively."""
    msg = request(ESC01)
    assert isinstance(msg.uri, SipUri) and msg.uri.user == "sips:user@example.com"
    to_uri, from_uri = msg.headers.to_addr().uri, msg.headers.from_addr().uri
    assert isinstance(to_uri, SipUri) and to_uri.user == "user"
    assert isinstance(from_uri, SipUri) and from_uri.user == "I have spaces"
    (contact,) = msg.headers.contacts()
    assert isinstance(contact.uri, SipUri) and contact.uri.user == "caller"
    assert contact.uri.params == (("lr", None), ("name", "value%41"))
    assert msg.headers.call_id() == "esc01.239409asdfakjkn23onasd0-3234"
    assert msg.headers.get("Content-Type") == "application/sdp"


def test_escnull_keeps_the_nulls() -> None:
    """3.1.1.4: the AOR is not cut at the NUL; the two Contacts are distinct."""
    msg = request(ESCNULL)
    to_uri = msg.headers.to_addr().uri
    assert isinstance(to_uri, SipUri) and to_uri.user == "null-\x00-null"
    users = [c.uri.user for c in msg.headers.contacts() if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]
    assert msg.headers.content_length() == 0


def test_esc02_percent_is_not_an_escape_in_methods_names_and_display_names() -> None:
    """3.1.1.5: an unknown method; two Contacts, not three; C%6Fntact is another header."""
    msg = request(ESC02)
    assert msg.method == "RE%47IST%45R"
    assert msg.headers.to_addr().display_name == "%Z%45"
    hosts = [c.uri.host for c in msg.headers.contacts() if isinstance(c.uri, SipUri)]
    assert hosts == ["host1.example.com", "host3.example.com"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert msg.headers.top_via().branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_display_name_right_against_the_bracket() -> None:
    assert request(LWSDISP).headers.from_addr().display_name == "caller"


def test_longreq_long_values_and_34_vias() -> None:
    """3.1.1.7."""
    msg = request(LONGREQ)
    to = msg.headers.to_addr()
    assert to.display_name == f"I have a user name of {'extreme' * 10} proportion"
    assert isinstance(to.uri, SipUri) and to.uri.port == 6000 and len(to.uri.params) == 3
    assert to.uri.get_param(f"longparam{'name' * 25}") == "shortvalue"
    assert msg.headers.from_addr().tag == LONG_TAG
    vias = msg.headers.vias()
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[-1].branch == LONG_BRANCH and vias[-1].received == "192.0.2.5"
    assert (msg.headers.get(f"Unknown-{'Long' * 20}-Name") or "").startswith("unknown-long")
    assert len(msg.body) == 150


def test_dblreq_the_extra_octets_are_not_a_second_message() -> None:
    """3.1.1.8 (RFC 3261 18.3): the body is Content-Length octets; the rest is discarded."""
    msg = request(DBLREQ)
    assert msg.method == "REGISTER" and msg.body == b""
    received = receive(DBLREQ)
    assert received.statuses == [405]
    assert received.calls == []  # the INVITE-looking octets reached nobody


def test_semiuri_user_part_with_a_semicolon() -> None:
    msg = request(SEMIURI)
    assert isinstance(msg.uri, SipUri)
    assert (msg.uri.user, msg.uri.host, msg.uri.params) == (
        "user;par=u@example.net",
        "example.com",
        (),
    )
    assert len(msg.headers.get_all("Accept")) == 6


def test_transports_unknown_transport_tokens() -> None:
    msg = request(TRANSPORTS)
    assert [v.transport for v in msg.headers.vias()] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.headers.call_id() == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body_framed_by_content_length() -> None:
    msg = request(MPART01)
    assert msg.method == "MESSAGE" and msg.body == MPART01_BODY and len(msg.body) == 553
    assert b"\x00" in msg.body


def test_unreason_and_noreason() -> None:
    """3.1.1.12, 3.1.1.13: any UTF-8 reason phrase, or none."""
    assert (response(UNREASON).status, response(UNREASON).reason) == (200, UNREASON_PHRASE)
    assert len(response(UNREASON).body) == 154
    assert (response(NOREASON).status, response(NOREASON).reason) == (100, "")


@pytest.mark.parametrize("data", [SCALARLG, BIGCODE], ids=["3.1.2.5", "3.1.2.19"])
def test_bad_responses_do_not_parse(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(data)


def test_unknown_method_and_registers_get_allow() -> None:
    """3.1.1.2, 3.1.1.5 (501) and the REGISTERs (405) list what we do allow."""
    for data in (INTMETH, ESC02, ESCNULL, REGAUT01):
        final = receive(data).final
        assert final is not None and final.headers.get_all("Allow")


def test_bext01_unsupported_lists_the_require_tags_not_proxy_require() -> None:
    """3.3.5: a UAS answers 420 naming what Require asked (Proxy-Require is for proxies)."""
    final = receive(BEXT01).final
    assert final is not None and final.status == 420
    assert final.headers.get_all("Unsupported") == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]


def test_invut_415_says_what_we_accept() -> None:
    final = receive(INVUT).final
    assert final is not None and final.status == 415
    assert final.headers.get("Accept") == "application/sdp"


def test_multi01_any_repeated_single_header_is_400() -> None:
    """3.3.8, also when the two Max-Forwards agree: To, From, Call-ID and CSeq twice."""
    same_max_forwards = MULTI01.replace(b"Max-Forwards: 5\r\n", b"Max-Forwards: 70\r\n")
    with pytest.raises(SipParseError, match="multiple"):
        parse_message(same_max_forwards)
    assert receive(same_max_forwards).outcome == "400"


def test_regbadct_a_uri_with_headers_outside_brackets_is_400() -> None:
    """3.1.2.13 (RFC 3261 20.10): and the same URI inside <> is fine (3.3.14)."""
    with pytest.raises(SipParseError, match="enclosed"):
        parse_message(REGBADCT)
    (contact,) = request(REGESCRT).headers.contacts()
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == (("Route", "<sip:sip.example.com>"),)


def test_unknown_schemes_in_header_fields_parse() -> None:
    """3.3.4: To, From and Contact with schemes we do not know are still well formed."""
    msg = request(UNKSM2)
    assert msg.headers.to_addr().uri == AbsoluteUri("isbn", "2983792873")
    assert msg.headers.from_addr().uri == AbsoluteUri("http", "//www.example.com")
    assert [c.uri for c in msg.headers.contacts()] == [AbsoluteUri("name", "John_Smith")]


def test_cparam01_and_cparam02_whose_parameter_is_it() -> None:
    """3.3.12: outside <> the parameter is the Contact's; 3.3.13: inside, the URI's."""
    (outside,) = request(CPARAM01).headers.contacts()
    assert outside.params == (("unknownparam", None),)
    assert isinstance(outside.uri, SipUri) and outside.uri.params == ()
    (inside,) = request(CPARAM02).headers.contacts()
    assert inside.params == ()
    assert isinstance(inside.uri, SipUri) and inside.uri.params == (("unknownparam", None),)


def test_bcast_is_well_formed_and_discarded() -> None:
    """3.3.10: parsed; an endpoint never sends anything towards 255.255.255.255."""
    assert response(BCAST).headers.vias()[1].host == "255.255.255.255"
    received = receive(BCAST)
    assert received.replies == [] and received.sent == []


def test_badbranch_parses_with_an_empty_transaction_id() -> None:
    assert request(BADBRANCH).headers.top_via().branch == "z9hG4bK"


def test_inv2543_parses_as_rfc_2543_wrote_it() -> None:
    """3.4.1: no branch, no From tag, no Content-Length, no Max-Forwards: all accepted by the
    parser; the dialog takes a null From tag and the From URI as target (95f9eb9)."""
    msg = request(INV2543)
    assert msg.headers.top_via().branch is None
    assert msg.headers.from_addr().tag is None
    assert msg.headers.content_length() is None and msg.headers.max_forwards() is None
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


# --- the same messages on a stream (TCP/TLS: RFC 3261 18.3 framing) ------------------------

STREAM_WHOLE = [WSINV, INTMETH, ESC01, ESCNULL, ESC02, LONGREQ, MPART01, UNREASON, SDP01]


@pytest.mark.parametrize("data", STREAM_WHOLE, ids=lambda data: data.split(b" ", 1)[0][:12])
def test_valid_messages_frame_whole_on_a_stream_fed_in_pieces(data: bytes) -> None:
    framer = StreamFramer()
    frames: list[bytes | KeepAlive] = []
    for start in range(0, len(data), 7):
        frames += framer.feed(data[start : start + 7])
    assert frames == [data] and framer.buffered == 0


def test_clerr_on_a_stream_waits_for_the_rest() -> None:
    """3.1.2.2: on TCP there is nothing to do but wait for more data (then time out)."""
    framer = StreamFramer()
    assert framer.feed(CLERR) == [] and framer.buffered == len(CLERR)


@pytest.mark.parametrize("data", [NCL, MCL01], ids=["3.1.2.3", "3.3.9"])
def test_a_bad_content_length_on_a_stream_closes_it(data: bytes) -> None:
    """3.1.2.3 and 3.3.9: the framing error is not recoverable: the connection is closed."""
    with pytest.raises(StreamFramingError):
        StreamFramer().feed(data)
