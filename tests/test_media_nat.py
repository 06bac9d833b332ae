"""A media node behind a 1:1 NAT names its public address in its SDP (media/nat.py)."""

from __future__ import annotations

import pytest

from media.config import parse_args
from media.nat import announce

SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 50000 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 10.0.0.5\r\n"
    "a=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\n"
    "a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host\r\n"
    "a=candidate:3 1 udp 2130706431 fd00::5 50002 typ host\r\n"
    "a=candidate:4 1 udp 1694498815 198.51.100.7 50000 typ srflx raddr 10.0.0.5 rport 50000\r\n"
    "a=end-of-candidates\r\n"
)


def test_host_candidates_and_the_connection_line_name_the_public_address() -> None:
    announced = announce(SDP, "203.0.113.9")
    assert "c=IN IP4 203.0.113.9\r\n" in announced
    assert "a=candidate:1 1 udp 2130706431 203.0.113.9 50000 typ host\r\n" in announced
    assert "10.0.0.5 50000 typ host" not in announced
    # Loopback, the other family and non-host candidates stay as they were.
    for kept in ("127.0.0.1 50001 typ host", "fd00::5 50002 typ host", "raddr 10.0.0.5"):
        assert kept in announced
    assert "o=- 1 1 IN IP4 0.0.0.0" in announced


@pytest.mark.parametrize(
    ("public", "line", "expected"),
    [
        (None, "c=IN IP4 10.0.0.5", "c=IN IP4 10.0.0.5"),
        (
            "2001:db8::9",
            "a=candidate:3 1 udp 1 fd00::5 9 typ host",
            "a=candidate:3 1 udp 1 2001:db8::9 9 typ host",
        ),
        ("2001:db8::9", "c=IN IP4 10.0.0.5", "c=IN IP4 10.0.0.5"),
        (
            "203.0.113.9",
            "a=candidate:1 1 udp 1 host.local 9 typ host",
            "a=candidate:1 1 udp 1 host.local 9 typ host",
        ),
        ("203.0.113.9", "a=candidate:1 1 udp", "a=candidate:1 1 udp"),  # truncated: left alone
        ("203.0.113.9", "c=IN IP4 0.0.0.0", "c=IN IP4 0.0.0.0"),
    ],
)
def test_only_what_the_public_address_replaces_changes(
    public: str | None, line: str, expected: str
) -> None:
    assert announce(line + "\n", public) == expected + "\n"


def test_the_setting_is_a_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args(["--secret", "s"]).public_ip is None
    assert parse_args(["--secret", "s", "--public-ip", "203.0.113.9"]).public_ip == "203.0.113.9"
    monkeypatch.setenv("CALLBOOK_MEDIA_PUBLIC_IP", "2001:db8::9")
    assert parse_args(["--secret", "s"]).public_ip == "2001:db8::9"
    with pytest.raises(SystemExit):
        parse_args(["--secret", "s", "--public-ip", "media.example.org"])
