"""The control plane: the worker's one outbound WebSocket to the gateway (SPEC.md "Control plane").

``protocol``   the messages between worker and gateway: schemas, versions, parsing.
``spool``      the outbox of metric windows, kept until acknowledged, bounded.
``backoff``    reconnect delays: 5, 10, 20, 40, 60, 60 ... s plus jitter.
``heartbeat``  heartbeats, and the deadline that finds a half-open connection.
``noproxy``    HTTPS_PROXY / NO_PROXY: whether and through which proxy the gateway is reached.
``proxy``      the HTTP CONNECT tunnel endpoint (RFC 9110 section 9.3.6) and the gateway
               endpoint built on it, TLS running inside the tunnel.
"""
