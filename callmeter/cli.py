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
        return _config(env, out, require_token=not args.no_token, env_file=args.env_file)
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
        "config",
        help="check the service's configuration and print it with the source of every value, "
        "secrets masked",
        description="Reads what callmeter-worker.service gets from systemd: the environment "
        "file /etc/callmeter/worker.env, parsed as systemd's EnvironmentFile= does (KEY=VALUE "
        "lines, # and ; comments, quotes, no 'export', no $expansion), then the drop-ins "
        "/etc/systemd/system/callmeter-worker.service.d/*.conf (Environment=, more "
        "EnvironmentFile=, LoadCredential=worker_token:PATH for the token). Every value's "
        "SOURCE column names the file it comes from, or 'default'. Variables set in your own "
        "shell override those files here, so that you can try a value, but the service never "
        "sees them: their SOURCE reads 'environment (your shell...)'. To check exactly what "
        "the service gets, leave them out: sudo env -i callmeter config. worker.env and "
        "the token file are not world-readable (systemd reads them as root): use sudo. "
        "Exit 0 when the configuration is valid, 2 when not (one line names the variable, "
        "the value and the file it came from) or when a file cannot be read.",
    )
    config.add_argument(
        "--no-token", action="store_true", help="do not require WORKER_TOKEN (local runs need none)"
    )
    config.add_argument(
        "--env-file",
        metavar="PATH",
        help="the environment file to check instead of /etc/callmeter/worker.env (an absent "
        "file is fine: the defaults apply)",
    )
    run = commands.add_parser(
        "run",
        help="run one test plan on this machine (no gateway) and report how good the calls were",
        description="Exit 0 when the plan's pass criteria hold, 1 when not, 2 for a bad plan "
        "or configuration. Ctrl-C stops cleanly and still writes the report.",
    )
    run.add_argument(
        "plan",
        help="the plan (JSON, see docs/plan.md; installed as "
        "/usr/share/doc/callmeter-worker/plan.md)",
    )
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


def _config(
    environ: Mapping[str, str],
    out: TextIO,
    *,
    require_token: bool,
    env_file: str | None = None,
    dropin_dir: str | None = None,
    credstore_dirs: Sequence[str] | None = None,
) -> int:
    """`callmeter config`: the service's sources (config_sources), validated by load_config.

    The paths default to config_sources' ENV_FILE, DROPIN_DIR and CREDSTORE_DIRS.
    """
    from callmeter import config_sources as sources
    from callmeter.config import ConfigError, load_config

    try:
        found = sources.gather(
            environ,
            env_file=env_file or sources.ENV_FILE,
            dropin_dir=dropin_dir or sources.DROPIN_DIR,
            credstore_dirs=sources.CREDSTORE_DIRS if credstore_dirs is None else credstore_dirs,
            require_token=require_token,
        )
    except sources.SourceError as error:
        sys.stderr.write(f"callmeter: {error}\n")
        return 2
    try:
        config = load_config(
            found.environ, require_token=require_token, credential_file=found.credential_file
        )
    except ConfigError as error:
        out.write(sources.render_sources(found))
        sys.stderr.write(f"callmeter: {error}{found.where(error.variable)}\n")
        return 2
    out.write(sources.render(config, found))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
