"""RTP and RTCP (RFC 3550): packets (packet.py, rtcp.py) and per-stream statistics (stats.py).

The modules here are sans-IO: no sockets, no reactor; times are passed in as seconds.
"""
