"""SDP as lines grouped into sections, parsed strictly; and ICE candidate attributes.

Pure text handling, no I/O. Strict about structure, because a filter over SDP is only as good as
its agreement with the receiving parser on where lines begin: any line ending is accepted
(``\\r\\n`` or a bare ``\\n``), but nothing else that some parser might read as one (a lone
``\\r``, form feeds, ``U+2028``, ``U+0085`` ...), no control characters, no blank or folded lines,
every line ``<letter>=<value>``, ``v=0`` first, exactly one ``o=`` (in the session part), at most
one ``c=`` per section. ``serialize`` always writes ``\\r\\n``, as RFC 8866 requires.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Characters that some line splitter somewhere takes as a line break, and the other controls.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE = re.compile(r"([a-z])=(.*)", re.DOTALL)
_FOUNDATION = re.compile(r"[A-Za-z0-9+/]{1,32}")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+")
_DIGITS = re.compile(r"[0-9]{1,10}")
_PORT = re.compile(r"[0-9]{1,5}")


class SdpError(ValueError):
    """The text is not a well-formed SDP (or candidate); the detail says where."""


@dataclass(frozen=True, slots=True)
class Line:
    kind: str  # the letter before "="
    value: str

    def attribute(self) -> tuple[str, str | None]:
        """For an ``a=`` line: the attribute's name and its value (None for a flag)."""
        name, colon, value = self.value.partition(":")
        return name, value if colon else None


@dataclass(frozen=True, slots=True)
class Session:
    """The session part (``v=`` first) and the media sections (each ``m=`` first)."""

    session: tuple[Line, ...]
    media: tuple[tuple[Line, ...], ...]

    def sections(self) -> tuple[tuple[Line, ...], ...]:
        return (self.session, *self.media)


def parse(text: str) -> Session:
    """The SDP's lines by section; raises SdpError unless it is well formed."""
    raw = text.split("\n")
    if raw[-1] == "":
        raw.pop()  # the final line ending
    lines: list[Line] = []
    for number, chunk in enumerate(raw, 1):
        text_line = chunk.removesuffix("\r")
        if _FORBIDDEN.search(text_line):
            raise SdpError(f"Line {number} holds a control character or a stray line break.")
        match = _LINE.fullmatch(text_line)
        if match is None:
            raise SdpError(f"Line {number} is not of the form <letter>=<value>.")
        lines.append(Line(match[1], match[2]))
    if not lines or lines[0] != Line("v", "0"):
        raise SdpError("An SDP starts with v=0.")
    sections: list[list[Line]] = [[]]
    for line in lines:
        if line.kind == "m":
            sections.append([])
        sections[-1].append(line)
    session = Session(tuple(sections[0]), tuple(tuple(s) for s in sections[1:]))
    _check_structure(session)
    return session


def _check_structure(session: Session) -> None:
    origins = [line for line in session.session if line.kind == "o"]
    if len(origins) != 1 or any(line.kind == "o" for m in session.media for line in m):
        raise SdpError("An SDP has exactly one o= line, in its session part.")
    for section in session.sections():
        connections = [line for line in section if line.kind == "c"]
        if len(connections) > 1:
            raise SdpError("A section has at most one c= line.")
        if any(line.kind == "v" for line in section[1:]):
            raise SdpError("Only the first line is v=.")


def serialize(session: Session) -> str:
    return "".join(f"{line.kind}={line.value}\r\n" for s in session.sections() for line in s)


# --- ICE candidates (RFC 8839, section 5.1) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    foundation: str
    component: str
    transport: str
    priority: str
    address: str
    port: str
    typ: str
    # raddr, rport and extensions (generation, ufrag, network-id, tcptype ...), in order.
    extensions: tuple[tuple[str, str], ...]

    def text(self) -> str:
        head = (
            f"{self.foundation} {self.component} {self.transport} {self.priority} "
            f"{self.address} {self.port} typ {self.typ}"
        )
        return " ".join([head, *(f"{name} {value}" for name, value in self.extensions)])


def parse_candidate(body: str) -> Candidate:
    """A candidate attribute's value (after ``candidate:``); raises SdpError if malformed."""
    if _FORBIDDEN.search(body):
        raise SdpError("The candidate holds a control character or a line break.")
    tokens = body.split(" ")
    if len(tokens) < 8 or len(tokens) % 2 or tokens[6] != "typ":
        raise SdpError("A candidate is: foundation component transport priority address port "
                       "typ type, then name-value pairs.")  # fmt: skip
    foundation, component, transport, priority, address, port, _, typ = tokens[:8]
    checks = (
        (_FOUNDATION, foundation), (_PORT, component), (_TOKEN, transport),
        (_DIGITS, priority), (_PORT, port), (_TOKEN, typ),
    )  # fmt: skip
    for pattern, value in checks:
        if pattern.fullmatch(value) is None:
            raise SdpError(f"The candidate field {value!r} is not well formed.")
    if _TOKEN.fullmatch(address) is None and ip_literal(address) is None:
        raise SdpError("The candidate's address is neither an IP address nor a host name.")
    pairs = tuple(zip(tokens[8::2], tokens[9::2], strict=True))
    for name, value in pairs:
        if _TOKEN.fullmatch(name) is None or name == "typ" or not value:
            raise SdpError(f"The candidate extension {name!r} is not well formed.")
    return Candidate(foundation, component, transport, priority, address, port, typ, pairs)


def is_port(text: str) -> bool:
    return _PORT.fullmatch(text) is not None


def ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if ``text`` is an IP literal (IPv6 possibly bracketed or with a zone)."""
    bare = text.removeprefix("[").removesuffix("]").partition("%")[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return None
