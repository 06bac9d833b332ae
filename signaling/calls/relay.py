"""Hide-my-IP: what of a device's network addresses may reach the other side (nothing but relays).

Pure. The SDP is parsed strictly (``sdp.py``) so that the filter and the receiving device agree
on every line; then relay candidates are kept with their related address blanked, every other
candidate is dropped, the address fields are set to placeholders as browsers write them, and any
other line that still names an address (an IP literal other than a placeholder, or an mDNS
``.local`` name) makes the whole SDP refused: a well-behaved device never sends one.
"""

from __future__ import annotations

from signaling.calls import sdp
from signaling.calls.sdp import Line, SdpError

# (connection address, origin address) per address type, as browsers write them.
_PLACEHOLDERS = {"IP4": ("0.0.0.0", "127.0.0.1"), "IP6": ("::", "::1")}
_RELATED = frozenset({"raddr", "rport"})

__all__ = ["SdpError", "relay_candidate", "relay_only_sdp"]


def relay_candidate(candidate: str) -> str | None:
    """For an ``ice`` message: the candidate with its related address blanked if it is a relay
    (or the empty end-of-candidates marker); None for any other candidate.

    Raises SdpError for a candidate that is not well formed.
    """
    if not candidate.strip():
        return ""
    prefix = "candidate:" if candidate.startswith("candidate:") else ""
    kept = _relay_only(sdp.parse_candidate(candidate.removeprefix(prefix)))
    return None if kept is None else prefix + kept.text()


def relay_only_sdp(text: str) -> str:
    """Keep only relay candidates (scrubbed) and blank the addresses of an SDP.

    Raises SdpError for an SDP that is not well formed or names an address elsewhere.
    """
    session = sdp.parse(text)
    return sdp.serialize(
        sdp.Session(
            _filter(session.session),
            tuple(_filter(section) for section in session.media),
        )
    )


def _filter(section: tuple[Line, ...]) -> tuple[Line, ...]:
    kept: list[Line] = []
    for line in section:
        filtered = _filter_line(line)
        if filtered is not None:
            kept.append(filtered)
    return tuple(kept)


def _filter_line(line: Line) -> Line | None:
    if line.kind == "o":
        return Line("o", _origin(line.value))
    if line.kind == "c":
        return Line("c", _connection(line.value))
    if line.kind == "a":
        name, value = line.attribute()
        if name == "remote-candidates":
            return None  # names the peer's addresses, which this side has no business repeating
        if name == "candidate":
            kept = _relay_only(sdp.parse_candidate(value or ""))
            return None if kept is None else Line("a", f"candidate:{kept.text()}")
        if name == "rtcp" and value is not None:
            return Line("a", f"rtcp:{_rtcp(value)}")
    _refuse_addresses(line.value.split(" "))
    _refuse_addresses(line.value.partition(":")[2].split(" "))
    return line


def _relay_only(candidate: sdp.Candidate) -> sdp.Candidate | None:
    """The relay candidate with ``raddr 0.0.0.0 rport 0``; None for any other candidate."""
    address = sdp.ip_literal(candidate.address)
    if candidate.typ != "relay" or address is None:
        return None  # a relay is reached at an IP address, never by a (possibly mDNS) name
    others = tuple(pair for pair in candidate.extensions if pair[0] not in _RELATED)
    _refuse_addresses([value for _, value in others])
    blank = "0.0.0.0" if address.version == 4 else "::"
    extensions = (("raddr", blank), ("rport", "0"), *others)
    return sdp.Candidate(
        candidate.foundation, candidate.component, candidate.transport, candidate.priority,
        candidate.address, candidate.port, candidate.typ, extensions,
    )  # fmt: skip


def _origin(value: str) -> str:
    fields = value.split(" ")
    if len(fields) != 6 or fields[3] != "IN" or fields[4] not in _PLACEHOLDERS:
        raise SdpError("The o= line is: username session-id version IN IP4|IP6 address.")
    _refuse_addresses(fields[:3])
    return " ".join([*fields[:5], _PLACEHOLDERS[fields[4]][1]])


def _connection(value: str) -> str:
    fields = value.split(" ")
    if len(fields) != 3 or fields[0] != "IN" or fields[1] not in _PLACEHOLDERS:
        raise SdpError("A c= line is: IN IP4|IP6 address.")
    return f"IN {fields[1]} {_PLACEHOLDERS[fields[1]][0]}"


def _rtcp(value: str) -> str:
    fields = value.split(" ")
    if not sdp.is_port(fields[0]):
        raise SdpError("An a=rtcp: line starts with a port.")
    if len(fields) == 1:
        return value
    if len(fields) != 4 or fields[1] != "IN" or fields[2] not in _PLACEHOLDERS:
        raise SdpError("An a=rtcp: line is: port [IN IP4|IP6 address].")
    return f"{fields[0]} IN {fields[2]} {_PLACEHOLDERS[fields[2]][0]}"


def _refuse_addresses(tokens: list[str]) -> None:
    for token in tokens:
        if _reveals(token):
            raise SdpError("The SDP names an address outside its candidate and address lines.")


def _reveals(token: str) -> bool:
    """An IP literal other than a placeholder, or an mDNS name."""
    if token.lower().rstrip(".").endswith(".local"):
        return True
    address = sdp.ip_literal(token)
    return address is not None and not (address.is_unspecified or address.is_loopback)
