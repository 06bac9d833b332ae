"""Free loopback ports for the servers tests start as processes.

Ports come from below the kernel's ephemeral range. A test that polls a port
before its server listens would otherwise, now and then, connect to itself: when
the kernel hands the polling client the very port it dials, TCP's simultaneous
open joins the socket to itself and the client reads its own request back
(CI saw ``Bad status line: b'GET /healthz HTTP/1.1'``).
"""

import random
import socket
from pathlib import Path

_FLOOR = 10000


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(*offsets: int) -> int:
    """A port P, free for TCP and UDP, with P + each offset free as well."""
    ceiling = _ephemeral_floor() - max(offsets, default=0)
    for _ in range(1000):
        port = random.randrange(_FLOOR, ceiling)
        if all(_free(port + offset) for offset in (0, *offsets)):
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")
