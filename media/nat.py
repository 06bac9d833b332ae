"""A media node behind a 1:1 NAT (a container's port mapping, a cloud VM's public address):
its SDP names the public address instead of the private one it binds, as LiveKit's ``node_ip``
and Janus's ``nat_1_1_mapping`` do.

The NAT must keep ports (1:1): what reaches public:port goes to private:port and back.
"""

from __future__ import annotations

import ipaddress


def announce(sdp: str, public: str | None) -> str:
    """``sdp`` with the address of every host candidate of ``public``'s family (loopback ones
    aside) and of its ``c=`` lines replaced by ``public``; unchanged when ``public`` is None."""
    if public is None:
        return sdp
    family = ipaddress.ip_address(public).version
    return "".join(_line(line, public, family) for line in sdp.splitlines(keepends=True))


def _line(line: str, public: str, family: int) -> str:
    body = line.rstrip("\r\n")
    ending = line[len(body) :]
    if body.startswith("a=candidate:"):
        fields = body.split(" ")
        if len(fields) > 7 and fields[7] == "host" and _replaceable(fields[4], family):
            fields[4] = public
            return " ".join(fields) + ending
    elif body.startswith("c=IN IP"):
        kind, address = body[len("c=IN ") :].split(" ", 1)
        if _replaceable(address, family):
            return f"c=IN {kind} {public}{ending}"
    return line


def _replaceable(address: str, family: int) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return parsed.version == family and not parsed.is_loopback and not parsed.is_unspecified
