"""Hide-my-IP over hostile SDPs and candidates: each is refused or keeps no device address.

Pure, table-driven. ``PRIVATE`` are the sending device's own addresses (host, reflexive, mDNS,
related addresses): none may reach the peer. ``198.51.100.4`` and ``2001:db8:ffff::4`` are TURN
relays and may.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from signaling.calls import sdp
from signaling.calls.relay import SdpError, relay_candidate, relay_only_sdp

PRIVATE = (
    "192.168.1.5",
    "10.0.0.7",
    "203.0.113.77",
    "2001:db8::7",
    "fe80::1",
    "::ffff:10.9.9.9",
    "3f2a1b4c-1111-2222-3333-444455556666.local",
)
HOST = "candidate:1 1 udp 2122260223 192.168.1.5 50000 typ host generation 0 network-id 1"
HOST6 = "candidate:2 1 udp 2122262783 2001:db8::7 50002 typ host generation 0"
MDNS = "candidate:3 1 udp 2122260223 3f2a1b4c-1111-2222-3333-444455556666.local 50004 typ host"
SRFLX = "candidate:4 1 udp 1686052607 203.0.113.77 50001 typ srflx raddr 192.168.1.5 rport 50000"
PRFLX = "candidate:5 1 udp 1845501695 203.0.113.77 50009 typ prflx raddr 10.0.0.7 rport 9"
TCP = "candidate:6 1 tcp 1518280447 10.0.0.7 9 typ host tcptype active"
RELAY = "candidate:7 1 udp 41885439 198.51.100.4 3478 typ relay raddr 203.0.113.77 rport 50001"
RELAY6 = "candidate:8 1 udp 41885695 2001:db8:ffff::4 3478 typ relay raddr fe80::1 rport 1"
RELAY_SCRUBBED = "candidate:7 1 udp 41885439 198.51.100.4 3478 typ relay raddr 0.0.0.0 rport 0"

# What Chromium sends, trimmed to one audio section, with real addresses where it puts them.
CHROME = [
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 192.168.1.5",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 6c8c2f3e-8f7c-4a2f-9d7a-0c6f0f2b1a3e",
    "m=audio 50000 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 203.0.113.77",
    "a=rtcp:9 IN IP4 10.0.0.7",
    "a=" + HOST,
    "a=" + SRFLX,
    "a=" + RELAY,
    "a=ice-ufrag:2Jc3",
    "a=ice-pwd:kkcKhO4Gq+Z9WZ0pZ8L1Hm2S",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 5E:04:3A:24:6A:4B:8D:C1:5B:0A:7D:42:7F:69:77:8B:71:5C:3B:14:6E:4C"
    ":5B:6A:EA:32:79:8A:F7:4F:B5:1F",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=sendrecv",
    "a=msid:6c8c2f3e-8f7c-4a2f-9d7a-0c6f0f2b1a3e 2b0d3e52-7c4b-4d7a-8a8e-5b1f3c4d2e1a",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=ssrc:3735928559 cname:Yk3l8m5Zq0Wx7Vb2",
    "a=end-of-candidates",
]


def _sdp(lines: list[str], ending: str = "\r\n") -> str:
    return ending.join(lines) + ending


def _replace(line: str, *replacement: str) -> list[str]:
    at = CHROME.index(line)
    return [*CHROME[:at], *replacement, *CHROME[at + 1 :]]


def _leaks(text: str) -> list[str]:
    return [address for address in PRIVATE if address in text]


# Hostile SDPs the filter must clean, each with what the peer must still get.
CLEANED = {
    "crlf": (_sdp(CHROME), [RELAY_SCRUBBED]),
    "bare_lf": (_sdp(CHROME, "\n"), [RELAY_SCRUBBED]),
    "mixed_endings": (
        "\r\n".join(CHROME[:10])
        + "\n"
        + "\n".join(CHROME[10:13])
        + "\r\n"
        + "\r\n".join(CHROME[13:]),
        [RELAY_SCRUBBED],
    ),
    "no_final_line_ending": (_sdp(CHROME).removesuffix("\r\n"), ["a=end-of-candidates"]),
    "candidates_after_the_last_media_section": (
        _sdp([*CHROME, "a=" + HOST6, "a=" + MDNS, "a=" + RELAY6]),
        ["candidate:8 1 udp 41885695 2001:db8:ffff::4 3478 typ relay raddr :: rport 0"],
    ),
    "candidates_in_the_session_part": (
        _sdp([*CHROME[:4], "a=" + PRFLX, "a=" + TCP, *CHROME[4:]]),
        [RELAY_SCRUBBED],
    ),
    "ipv6_everywhere": (
        _sdp(
            [
                "v=0",
                "o=- 1 2 IN IP6 2001:db8::7",
                "s=-",
                "t=0 0",
                "m=audio 9 RTP/AVP 0",
                "c=IN IP6 fe80::1",
                "a=rtcp:9 IN IP6 2001:db8::7",
                "a=" + HOST6,
                "a=" + RELAY6,
            ]
        ),
        ["o=- 1 2 IN IP6 ::1", "c=IN IP6 ::", "a=rtcp:9 IN IP6 ::"],
    ),
    "origin_and_connection_addresses": (
        _sdp(CHROME),
        ["o=- 4611731400430051336 2 IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"],
    ),
    "rport_before_raddr": (
        _sdp(
            _replace(
                "a=" + RELAY,
                "a=candidate:7 1 udp 41 198.51.100.4 3478 typ relay rport "
                "50001 raddr 203.0.113.77 generation 0",
            )
        ),
        ["candidate:7 1 udp 41 198.51.100.4 3478 typ relay raddr 0.0.0.0 rport 0 generation 0"],
    ),
    "raddr_without_rport": (
        _sdp(
            _replace(
                "a=" + RELAY, "a=candidate:7 1 udp 41 198.51.100.4 3478 typ relay raddr 10.0.0.7"
            )
        ),
        ["typ relay raddr 0.0.0.0 rport 0"],
    ),
    "mdns_relay_address": (
        _sdp(
            _replace(
                "a=" + RELAY,
                "a=candidate:9 1 udp 41 3f2a1b4c-1111-2222-3333-444455556666.local 3478 typ relay",
            )
        ),
        ["a=ice-ufrag:2Jc3"],
    ),
    "remote_candidates": (
        _sdp([*CHROME, "a=remote-candidates:1 192.168.1.5 50000 2 10.0.0.7 9"]),
        ["a=rtcp-mux"],
    ),
    "every_candidate_kind": (
        _sdp([*CHROME, *(f"a={c}" for c in (HOST6, MDNS, PRFLX, TCP))]),
        [RELAY_SCRUBBED],
    ),
}


@pytest.mark.parametrize("name", sorted(CLEANED))
def test_hostile_sdp_is_cleaned(name: str) -> None:
    text, wanted = CLEANED[name]
    filtered = relay_only_sdp(text)
    assert _leaks(filtered) == []
    for piece in wanted:
        assert piece in filtered
    assert "\n" not in filtered.replace("\r\n", "") and filtered.endswith("\r\n")
    assert relay_only_sdp(filtered) == filtered  # the peer gets a well-formed SDP


# Hostile SDPs the filter must refuse: whatever a peer's parser would make of them.
REFUSED = {
    "lone_cr_hides_a_line": _sdp([*CHROME[:-1], "a=mid:0\ra=" + HOST]),
    "unicode_line_separator": _sdp([*CHROME, "a=x-note:1\u2028a=" + HOST]),
    "next_line_character": _sdp([*CHROME, "a=x-note:1\x85a=" + HOST]),
    "vertical_tab": _sdp([*CHROME, "a=x-note:1\x0ba=" + HOST]),
    "form_feed": _sdp([*CHROME, "a=x-note:1\x0ca=" + HOST]),
    "nul": _sdp([*CHROME, "a=x-note:1\x00a=" + HOST]),
    "tab_in_candidate": _sdp([*CHROME, "a=" + RELAY.replace(" 3478", "\t3478")]),
    "folded_line": _sdp([*CHROME, "a=" + RELAY, " a=" + HOST]),
    "folded_candidate_tail": _sdp([*CHROME, "a=candidate:7 1 udp 41 198.51.100.4", " 3478 typ x"]),
    "blank_line_then_candidates": _sdp([*CHROME, "", "a=" + HOST]),
    "duplicated_c_line": _sdp(
        _replace("c=IN IP4 203.0.113.77", "c=IN IP4 0.0.0.0", "c=IN IP4 203.0.113.77")
    ),
    "duplicated_o_line": _sdp([*CHROME[:2], "o=- 1 2 IN IP4 192.168.1.5", *CHROME[2:]]),
    "o_line_in_media": _sdp([*CHROME, "o=- 1 2 IN IP4 192.168.1.5"]),
    "no_o_line": _sdp([CHROME[0], *CHROME[2:]]),
    "not_v0_first": _sdp(CHROME[1:]),
    "second_v_line": _sdp([*CHROME, "v=0"]),
    "uppercase_type": _sdp([*CHROME, "A=" + HOST]),
    "space_before_equals": _sdp([*CHROME, "a =" + HOST]),
    "address_in_session_name": _sdp(_replace("s=-", "s=192.168.1.5")),
    "mdns_name_in_an_attribute": _sdp([*CHROME, "a=x-host:" + PRIVATE[-1]]),
    "ipv4_mapped_in_an_attribute": _sdp([*CHROME, "a=x-from:::ffff:10.9.9.9"]),
    "address_in_origin_username": _sdp(_replace(CHROME[1], "o=192.168.1.5 1 2 IN IP4 0.0.0.0")),
    "candidate_without_typ": _sdp([*CHROME, "a=candidate:1 1 udp 2122 192.168.1.5 5000 host"]),
    "candidate_with_double_space": _sdp([*CHROME, "a=" + HOST.replace(" 50000", "  50000")]),
    "candidate_with_odd_extension": _sdp([*CHROME, "a=" + RELAY + " generation"]),
    "relay_hides_address_in_extension": _sdp([*CHROME, "a=" + RELAY + " x-peer 192.168.1.5"]),
    "c_line_with_extra_field": _sdp(_replace(CHROME[8], "c=IN IP4 0.0.0.0 a=" + HOST)),
    "c_line_of_unknown_type": _sdp(_replace("c=IN IP4 203.0.113.77", "c=IN IPX 203.0.113.77")),
    "joined_without_line_ending": _sdp([*CHROME[:-1], "a=mid:0a=" + HOST]),
    "rtcp_without_port": _sdp(_replace("a=rtcp:9 IN IP4 10.0.0.7", "a=rtcp:IN IP4 10.0.0.7")),
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_malformed_or_hostile_sdp_is_refused(name: str) -> None:
    with pytest.raises(SdpError):
        relay_only_sdp(REFUSED[name])


@pytest.mark.parametrize(
    ("candidate", "forwarded"),
    [
        (HOST, None),
        (HOST6, None),
        (MDNS, None),
        (SRFLX, None),
        (PRFLX, None),
        (TCP, None),
        (RELAY, RELAY_SCRUBBED),
        (RELAY.removeprefix("candidate:"), RELAY_SCRUBBED.removeprefix("candidate:")),
        (RELAY6, "candidate:8 1 udp 41885695 2001:db8:ffff::4 3478 typ relay raddr :: rport 0"),
        ("", ""),
    ],
)
def test_ice_candidates_keep_only_scrubbed_relays(candidate: str, forwarded: str | None) -> None:
    assert relay_candidate(candidate) == forwarded


@pytest.mark.parametrize(
    "candidate",
    [
        "garbage",
        RELAY + "\r\na=" + HOST,  # a relay with a host candidate in tow
        RELAY + "\n" + HOST,
        RELAY + "\u2028" + HOST,
        RELAY + " x-peer 192.168.1.5",
        RELAY.replace("typ relay", "typ  relay"),
        "candidate:1 1 udp 1 198.51.100.4 3478 typ",
        RELAY + " typ host",  # a second type, for a parser that reads the last one
    ],
)
def test_malformed_ice_candidates_are_refused(candidate: str) -> None:
    with pytest.raises(SdpError):
        relay_candidate(candidate)


def test_parse_and_serialize_keep_every_line_in_its_section() -> None:
    session = sdp.parse(_sdp(CHROME, "\n"))
    assert [line.kind for line in session.session] == ["v", "o", "s", "t", "a", "a", "a"]
    assert len(session.media) == 1 and session.media[0][0].kind == "m"
    assert sdp.serialize(session) == _sdp(CHROME)


@pytest.mark.parametrize("name", ["chromium-offer-mdns-hosts", "chromium-offer-relay-only"])
def test_what_chromium_sends_passes_the_filter(name: str) -> None:
    """Offers of Debian's Chromium 156 (tests/data/fuzz/sdp/): mDNS host candidates (dropped),
    and relay-only ones gathered from coturn (kept)."""
    text = (Path(__file__).parent / "data" / "fuzz" / "sdp" / f"{name}.sdp").read_bytes().decode()
    filtered = relay_only_sdp(text)
    assert ".local" not in filtered
    kept = [line for line in filtered.split("\r\n") if line.startswith("a=candidate:")]
    assert all(" typ relay raddr 0.0.0.0 rport 0 " in line for line in kept)
    assert bool(kept) is ("relay" in name)
    assert filtered.count("\r\n") == text.count("\r\n") - text.count("typ host")
