"""The control plane: the worker's one outbound WebSocket to the gateway (SPEC.md "Control plane").

``noproxy``  HTTPS_PROXY / NO_PROXY: whether and through which proxy the gateway is reached.
``proxy``    the HTTP CONNECT tunnel endpoint (RFC 9110 section 9.3.6) and the gateway endpoint
             built on it, TLS running inside the tunnel.
"""
