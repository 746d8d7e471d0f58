"""The ``callmeter`` command.  Subcommands grow as their parts are built.

Exit codes: 0 success, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from callmeter import __version__

__all__ = ["main"]


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    env = os.environ if environ is None else environ
    if args.command == "version":
        out.write(f"callmeter-worker {__version__}\n")
        return 0
    if args.command == "config":
        return _config(env, out, require_token=not args.no_token)
    if args.command == "run":
        from callmeter.runner import RunOptions, run_command

        options = RunOptions(
            args.plan,
            report=args.report,
            json_output=args.json,
            calls=args.calls,
            overrides={
                "SIP_IP": args.sip_ip,
                "SIP_PORT": args.sip_port,
                "SDP_IP": args.sdp_ip,
                "EXTERNAL_IP": args.external_ip,
                "RTP_PORT_MIN": args.rtp_port_min,
                "RTP_PORT_MAX": args.rtp_port_max,
            },
            plain=True if args.plain else None,
            processes=args.processes or os.cpu_count() or 1,
            log=args.log,
        )
        return run_command(options, env, out, sys.stderr)
    parser.print_help(out)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callmeter",
        description="callmeter-worker: SIP/VoIP test endpoints and call-quality metrics. "
        "The daemon runs as `twistd -n callmeter` (Debian: twistd3) or the systemd unit "
        "callmeter-worker.service.",
    )
    parser.add_argument("--version", action="version", version=f"callmeter-worker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("version", help="print the version")
    config = commands.add_parser(
        "config", help="check the configuration (environment) and print it, secrets masked"
    )
    config.add_argument(
        "--no-token", action="store_true", help="do not require WORKER_TOKEN (local runs need none)"
    )
    run = commands.add_parser(
        "run",
        help="run one test plan on this machine (no gateway) and report how good the calls were",
        description="Exit 0 when the plan's pass criteria hold, 1 when not, 2 for a bad plan "
        "or configuration. Ctrl-C stops cleanly and still writes the report.",
    )
    run.add_argument("plan", help="the plan (JSON, see docs/plan.md)")
    run.add_argument("--report", metavar="FILE.json", help="write the JSON report here")
    run.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    run.add_argument("--calls", metavar="FILE.csv", help="write one CSV row per call")
    run.add_argument("--plain", action="store_true", help="plain progress lines, no live line")
    run.add_argument(
        "--log",
        metavar="FILE",
        help="append the whole log (every level, every process) to FILE, as LOG_FORMAT",
    )
    run.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="worker processes sharing the endpoints (default: one per CPU core)",
    )
    for option in ("sip-ip", "sip-port", "sdp-ip", "external-ip", "rtp-port-min", "rtp-port-max"):
        run.add_argument(f"--{option}", help=f"overrides ${option.upper().replace('-', '_')}")
    return parser


def _config(environ: Mapping[str, str], out: TextIO, *, require_token: bool) -> int:
    from callmeter.config import ConfigError, load_config

    try:
        config = load_config(environ, require_token=require_token)
    except ConfigError as error:
        sys.stderr.write(f"callmeter: {error}\n")
        return 2
    for name, value in config.describe().items():
        out.write(f"{name:24} {value}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
