"""Hide-my-IP: what of a device's network addresses may reach the other side (nothing but relays).

Pure text filtering over ICE candidates and the address lines of SDP; it does not interpret
anything else in the SDP.
"""

from __future__ import annotations

import re

_TYP = re.compile(r"\btyp\s+(\w+)")
# A relay candidate's related address is the device's own mapped address: blank it too.
_RELATED = re.compile(r"\braddr\s+\S+\s+rport\s+\d+")
_CONNECTION = re.compile(r"^c=IN IP([46]) \S+", re.MULTILINE)
_RTCP = re.compile(r"^a=rtcp:(\d+) IN IP([46]) \S+", re.MULTILINE)
_ORIGIN = re.compile(r"^(o=.* IN IP)([46]) \S+", re.MULTILINE)
_UNSPECIFIED = {"4": "0.0.0.0", "6": "::"}


def relay_candidate(candidate: str) -> str | None:
    """The candidate with its related address blanked if it is a relay (or the empty
    end-of-candidates marker); None for host, server- and peer-reflexive candidates."""
    if not candidate.strip():
        return candidate
    match = _TYP.search(candidate)
    if match is None or match.group(1) != "relay":
        return None
    return _RELATED.sub("raddr 0.0.0.0 rport 0", candidate)


def relay_only_sdp(sdp: str) -> str:
    """Keep only relay candidates (scrubbed) and blank the connection addresses of an SDP."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    kept: list[str] = []
    for line in sdp.split(newline):
        if line.startswith("a=remote-candidates:"):
            continue  # names the peer's addresses, which this side has no business repeating
        if line.startswith("a=candidate:"):
            scrubbed = relay_candidate(line[len("a=") :])
            if scrubbed is None:
                continue
            line = "a=" + scrubbed
        kept.append(line)
    text = newline.join(kept)
    text = _CONNECTION.sub(lambda mt: f"c=IN IP{mt[1]} {_UNSPECIFIED[mt[1]]}", text)
    text = _ORIGIN.sub(lambda mt: f"{mt[1]}{mt[2]} {_UNSPECIFIED[mt[2]]}", text)
    return _RTCP.sub(lambda mt: f"a=rtcp:{mt[1]} IN IP{mt[2]} {_UNSPECIFIED[mt[2]]}", text)
