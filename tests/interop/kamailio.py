"""Kamailio 5.6 (Debian) as registrar and proxy with digest auth, for interop tests.

The configuration is written per test: a registrar that challenges REGISTER (401) and a proxy
that challenges INVITE (407), each with the literal password ``secret-<user>``, with the digest
algorithm chosen per test (``modparam("auth", "algorithm", ...)``), record-routing calls and
relaying them to the registered Contact.  With ``tls`` it also listens for SIP over TLS with a
certificate from the test's CA.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.interop.conftest import free_loopback_port, require_binary

DOMAIN = "test.example"

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
tcp_children=2
auto_aliases=no
alias="{domain}"
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
{tls_listen}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
{tls_module}

modparam("usrloc", "db_mode", 0)
modparam("auth", "algorithm", "{algorithm}")
modparam("registrar", "default_expires", 300)
{tls_params}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    $var(password) = "secret-" + $fU;
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "$var(password)", "0")) {{
            www_challenge("$td", "1");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        if (!pv_proxy_authenticate("$fd", "$var(password)", "0")) {{
            proxy_challenge("$fd", "1");
            exit;
        }}
        consume_credentials();
        record_route();
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        t_relay();
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


@dataclass
class Kamailio:
    process: subprocess.Popen[bytes]
    port: int
    tls_port: int | None
    log: Path

    def stop(self) -> None:
        """SIGTERM to Kamailio's whole process group (its worker processes too), then SIGKILL:
        a worker left behind would keep the ports and outlive the test."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.process.pid):
                break


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start_kamailio(work: Path, algorithm: str = "MD5", tls_cert: Path | None = None) -> Kamailio:
    """Write the configuration, check it (``kamailio -c``), start it in the foreground."""
    binary = require_binary("kamailio")
    port = free_loopback_port()
    tls_port = free_loopback_port() if tls_cert is not None else None
    config = CONFIG.format(
        domain=DOMAIN,
        port=port,
        algorithm=algorithm,
        tls_listen=f"listen=tls:127.0.0.1:{tls_port}\nenable_tls=yes" if tls_port else "",
        tls_module='loadmodule "tls.so"' if tls_port else "",
        tls_params=f'modparam("tls", "config", "{work / "tls.cfg"}")' if tls_cert else "",
    )
    if tls_cert is not None:
        (work / "tls.cfg").write_text(
            "[server:default]\n"
            f"certificate = {tls_cert}\nprivate_key = {tls_cert}\n"
            "verify_certificate = no\nrequire_certificate = no\n\n"
            "[client:default]\nverify_certificate = no\nrequire_certificate = no\n"
        )
    path = work / "kamailio.cfg"
    path.write_text(config)
    return _run(binary, work, path, port, tls_port)


def _run(binary: str, work: Path, path: Path, port: int, tls_port: int | None) -> Kamailio:
    """Check the configuration at ``path`` (``kamailio -c``) and start Kamailio in the
    foreground, in its own process group (:meth:`Kamailio.stop` ends every worker), once it
    listens on ``port``."""
    check = subprocess.run(
        [binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    if check.returncode != 0:
        raise RuntimeError(f"kamailio -c refused the config:\n{check.stderr}")
    log = work / "kamailio.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                binary,
                "-DD",
                "-E",
                "-f",
                str(path),
                "-P",
                str(work / "kamailio.pid"),
                "-Y",
                str(work),
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Kamailio(process, port, tls_port, log)
    deadline = time.monotonic() + 10
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"kamailio did not start:\n{log.read_text()}")
        time.sleep(0.1)
    time.sleep(0.3)
    return server


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


RECORD_ROUTE_CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
tcp_children=2
auto_aliases=no
alias="{domain}"
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "default_expires", 300)

request_route {{
    xlog("L_NOTICE", "{trace} request $rm from $si:$sp\\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "{trace} loose $rm from $si:$sp\\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        t_relay();
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""
"""A registrar without auth (usrloc in memory) and a stateful proxy that record-routes every
INVITE (RFC 3261 16.6 step 4) and loose-routes in-dialog requests (``loose_route()``, 16.4).
Every request it receives is logged as ``<trace> request METHOD``, and every one it relays on
its Route header as ``<trace> loose METHOD``."""

TRACE = "CALLMETER-TRACE"


def write_record_route_config(work: Path, port: int) -> Path:
    """Write :data:`RECORD_ROUTE_CONFIG` for ``127.0.0.1:port`` to ``work/kamailio.cfg``."""
    path = work / "kamailio.cfg"
    path.write_text(RECORD_ROUTE_CONFIG.format(domain=DOMAIN, port=port, trace=TRACE))
    return path


def start_record_route_proxy(work: Path) -> Kamailio:
    """Kamailio with :data:`RECORD_ROUTE_CONFIG`, checked (``kamailio -c``) and started in the
    foreground in its own process group (stop it with :meth:`Kamailio.stop`)."""
    binary = require_binary("kamailio")
    port = free_loopback_port()
    path = write_record_route_config(work, port)
    return _run(binary, work, path, port, None)


def traced_requests(log: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(every request Kamailio received, those it loose-routed) counted by method."""
    received: dict[str, int] = {}
    loose: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        _, marker, rest = line.partition(TRACE + " ")
        if not marker:
            continue
        kind, _, tail = rest.partition(" ")
        method = tail.split(" ", 1)[0]
        counts = received if kind == "request" else loose if kind == "loose" else None
        if counts is not None and method:
            counts[method] = counts.get(method, 0) + 1
    return received, loose
