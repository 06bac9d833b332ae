"""Hide-my-IP under fuzzing: for any input, the filter refuses it (SdpError) or what it returns
names no address but relays' and placeholders.

The corpus (``tests/data/fuzz/sdp/``, one input per file) is replayed as is; the property test
builds SDPs full of device addresses and mangles their line structure. A longer run:
``CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_sdp.py``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.calls.relay import SdpError, relay_candidate, relay_only_sdp

CORPUS = Path(__file__).parent / "data" / "fuzz" / "sdp"
EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DEVICE = [
    "192.168.1.5", "10.0.0.7", "203.0.113.77", "2001:db8::7", "fe80::1", "::ffff:10.9.9.9",
    "3f2a1b4c-1111-2222-3333-444455556666.local",
]  # fmt: skip
RELAYS = ["198.51.100.4", "2001:db8:ffff::4"]
PLACEHOLDERS = {"0.0.0.0", "127.0.0.1", "::", "::1"}

_IPV4 = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![0-9])")
_IPV6 = re.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*")
_MDNS = re.compile(r"[\w-]+\.local\b", re.IGNORECASE)


def addresses(text: str) -> set[str]:
    """Every IP literal and mDNS name in the text, found independently of the filter."""
    found = set(_IPV4.findall(text)) | set(_MDNS.findall(text))
    for token in _IPV6.findall(text):
        with contextlib.suppress(ValueError):
            found.add(str(ipaddress.IPv6Address(token)))
    return found


def relay_addresses(text: str) -> set[str]:
    kept = set()
    for line in text.split("\r\n"):
        fields = line.split(" ")
        if line.startswith("a=candidate:") and fields[6:8] == ["typ", "relay"]:
            kept.add(str(ipaddress.ip_address(fields[4])))
    return kept


def check_filtered(text: str) -> None:
    """Raises AssertionError unless the filter refuses ``text`` or keeps it free of devices'."""
    try:
        filtered = relay_only_sdp(text)
    except SdpError:
        return
    stray = addresses(filtered) - relay_addresses(filtered) - PLACEHOLDERS
    assert stray == set(), filtered
    assert [address for address in DEVICE if address in filtered] == [], filtered
    for line in filtered.split("\r\n"):
        if line.startswith("a=candidate:"):
            assert " typ relay raddr " in line and line.split(" ")[9] in {"0.0.0.0", "::"}
    assert relay_only_sdp(filtered) == filtered


def check_candidate(text: str) -> None:
    try:
        forwarded = relay_candidate(text)
    except SdpError:
        return
    if forwarded:
        assert addresses(forwarded) - set(map(str, map(ipaddress.ip_address, RELAYS))) <= {
            "0.0.0.0", "::"
        }, forwarded  # fmt: skip


def _corpus() -> list[Path]:
    return sorted(CORPUS.iterdir())


@pytest.mark.parametrize("path", _corpus(), ids=lambda path: path.name)
def test_corpus(path: Path) -> None:
    text = path.read_bytes().decode("utf-8", errors="replace")
    check_filtered(text)
    check_candidate(text.strip("\r\n"))


# --- the property ------------------------------------------------------------------------------

device = st.sampled_from(DEVICE)
relay = st.sampled_from(RELAYS)
family = st.sampled_from(["IP4", "IP6"])
port = st.integers(0, 65535).map(str)


@st.composite
def candidates(draw: st.DrawFn) -> str:
    typ = draw(st.sampled_from(["host", "srflx", "prflx", "relay"]))
    address = draw(relay if typ == "relay" else device)
    text = f"candidate:{draw(st.integers(1, 99))} 1 {draw(st.sampled_from(['udp', 'tcp']))} "
    text += f"{draw(st.integers(0, 2**31))} {address} {draw(port)} typ {typ}"
    if typ != "host" and draw(st.booleans()):
        text += f" raddr {draw(device)} rport {draw(port)}"
    if draw(st.booleans()):
        text += " generation 0 network-id 1"
    return text


NOISE = ["s=-", "t=0 0", "a=mid:0", "a=rtcp-mux", "a=ice-ufrag:2Jc3", "a=sendrecv",
         "a=rtpmap:111 opus/48000/2", "a=end-of-candidates", "a=group:BUNDLE 0"]  # fmt: skip


@st.composite
def address_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["c", "rtcp", "candidate", "remote", "noise"]))
    if kind == "c":
        return f"c=IN {draw(family)} {draw(device)}"
    if kind == "rtcp":
        return f"a=rtcp:{draw(port)} IN {draw(family)} {draw(device)}"
    if kind == "candidate":
        return "a=" + draw(candidates())
    if kind == "remote":
        return f"a=remote-candidates:1 {draw(device)} {draw(port)}"
    return draw(st.sampled_from(NOISE))


@st.composite
def hostile_sdps(draw: st.DrawFn) -> str:
    lines = ["v=0", f"o=- 1 2 IN {draw(family)} {draw(device)}", "s=-", "t=0 0"]
    lines += draw(st.lists(address_lines(), max_size=3))
    for _ in range(draw(st.integers(0, 3))):
        lines.append(f"m={draw(st.sampled_from(['audio', 'video']))} 9 UDP/TLS/RTP/SAVPF 111")
        lines += draw(st.lists(address_lines(), max_size=6))
    # Mostly proper endings, sometimes one that some parser reads differently, or none at all.
    endings = st.sampled_from(["\r\n"] * 6 + ["\n"] * 4 + [
        "\r", "\r\r\n", "\n\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", " ", "",
        "\n ", "\n\t", "\x00",
    ])  # fmt: skip
    return "".join(line + draw(endings) for line in lines)


@FUZZ
@given(hostile_sdps())
def test_any_sdp_is_refused_or_keeps_only_relays(text: str) -> None:
    check_filtered(text)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_any_text_is_refused_or_keeps_only_relays(text: str) -> None:
    check_filtered("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n" + text)
    check_candidate(text)


@FUZZ
@given(candidates(), st.sampled_from(["", "\r\na=", "\n", "\r", "\u2028", " x-peer ", " "]),
       candidates())  # fmt: skip
def test_any_ice_candidate_is_refused_or_a_scrubbed_relay(
    first: str, joint: str, second: str
) -> None:
    check_candidate(first + joint + second)
    check_candidate(first)
