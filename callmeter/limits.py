"""Process limits the media plane needs: open files for three sockets per RTP stream.

Every RTP stream holds three sockets (RTP connected to the peer, RTP from anyone else, RTCP;
see :mod:`callmeter.rtp.stream`), so 500 endpoints with audio and video need about 3,000
descriptors: far above the soft limit of 1,024 a login shell usually has. The soft limit
may be raised up to the hard one without privileges (setrlimit(2)); the engine's processes
do that when they start. The systemd unit sets LimitNOFILE itself.
"""

from __future__ import annotations

import resource

__all__ = ["raise_open_files_limit"]

#: Never ask for more than this (a hard limit may be "unlimited" or 2**30).
CEILING = 1 << 20


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (at most :data:`CEILING`).

    Returns the soft limit in force afterwards. Never lowers it; an error leaves it as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
