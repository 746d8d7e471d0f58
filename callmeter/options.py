"""twistd options for ``twistd -n callmeter``: each overrides one environment variable."""

from __future__ import annotations

from twisted.python import usage

__all__ = ["OPTION_VARIABLES", "WorkerOptions"]

OPTION_VARIABLES: dict[str, str] = {
    "gateway-url": "GATEWAY_URL",
    "sip-ip": "SIP_IP",
    "sdp-ip": "SDP_IP",
    "external-ip": "EXTERNAL_IP",
    "sip-port": "SIP_PORT",
    "rtp-port-min": "RTP_PORT_MIN",
    "rtp-port-max": "RTP_PORT_MAX",
    "health-bind": "HEALTH_BIND",
    "health-port": "HEALTH_PORT",
    "tls-ca-file": "TLS_CA_FILE",
    "max-endpoints": "MAX_ENDPOINTS",
    "log-level": "LOG_LEVEL",
    "log-format": "LOG_FORMAT",
    "media-cache-dir": "MEDIA_CACHE_DIR",
    "token-file": "WORKER_TOKEN_FILE",
}
"""Option name -> the variable it overrides.  The token itself has no option: argv is public."""


class WorkerOptions(usage.Options):
    """Options of the ``callmeter`` twistd plugin."""

    optParameters = [
        [name, None, None, f"overrides ${variable}"] for name, variable in OPTION_VARIABLES.items()
    ]

    def overrides(self) -> dict[str, str | None]:
        """The given options, keyed by the variable they override."""
        return {variable: self[name] for name, variable in OPTION_VARIABLES.items()}
