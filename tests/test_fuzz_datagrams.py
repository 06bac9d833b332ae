"""Fuzzing every parser of bytes the SFU takes from the network, and the shield in front of aioice.

Each target must either work or fail in its documented way (``MalformedPacket``, a counted drop),
never with any other exception. The corpus in tests/data/fuzz/datagrams/ (one datagram a file,
the hostile inputs of issue 11 among them) is replayed on every run; hypothesis adds
``CALLBOOK_FUZZ_EXAMPLES`` generated inputs per property (default 100). A longer run:

    CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_datagrams.py
"""

from __future__ import annotations

import contextlib
import os
import struct

import pytest
from aioice.candidate import Candidate
from aioice.ice import CandidatePair, StunProtocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.forwarding import AUDIO_LEVEL_URI, Forwarder, Kind
from media.rtp import (
    MalformedPacket,
    audio_level,
    is_rtcp,
    parse_rtcp,
    parse_rtp,
    remap_extensions,
    rewrite_rtp,
    vp8_keyframe_start,
)
from media.shield import MAX_DATAGRAM, Dropped, guard_protocol
from tests.hostile_datagrams import corpus
from tests.test_sfu_forwarding import A_AUDIO, A_VIDEO, legs

EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CORPUS = corpus()
PEER = ("127.0.0.1", 40000)

# Inputs that look enough like RTP/RTCP to get past the first checks.
rtp_like = st.builds(
    lambda b0, b1, rest: bytes([b0, b1]) + rest,
    st.integers(0x80, 0xBF),
    st.integers(0, 255),
    st.binary(max_size=1600),
)
one_byte_extended = st.builds(
    lambda pt, words, body, payload: (
        struct.pack("!BBHII", 0x90, pt, 1, 2, A_AUDIO)
        + struct.pack("!HH", 0xBEDE, words)
        + body
        + payload
    ),
    st.sampled_from([111, 96]),
    st.integers(0, 20),
    st.binary(max_size=80),
    st.binary(max_size=40),
)
rtcp_like = st.builds(
    lambda b0, pt, words, rest: struct.pack("!BBH", b0, pt, words) + rest,
    st.integers(0x80, 0x9F),
    st.sampled_from([200, 201, 202, 203, 205, 206, 207]),
    st.integers(0, 70),
    st.binary(max_size=300),
)
datagrams = st.one_of(st.binary(max_size=2100), rtp_like, one_byte_extended, rtcp_like)


def check_rtp(data: bytes) -> None:
    try:
        view = parse_rtp(data)
    except MalformedPacket:
        return
    assert 12 <= view.csrc_end <= view.extension_start <= view.header_length
    assert view.header_length <= view.payload_end <= len(data)
    vp8_keyframe_start(data, view)
    for ext_id in range(16):
        with contextlib.suppress(MalformedPacket):
            audio_level(data, view, ext_id)
    try:
        remap_extensions(data, view, {1: 3, 2: 4})
        packet = rewrite_rtp(data, view, 0xC0, 109, {1: 3})
    except MalformedPacket:
        return
    again = parse_rtp(packet)
    assert (again.ssrc, again.payload_type, again.sequence) == (0xC0, 109, view.sequence)


def check_rtcp(data: bytes) -> None:
    is_rtcp(data)
    with contextlib.suppress(MalformedPacket):
        parse_rtcp(data)


def forwarder() -> Forwarder:
    f = Forwarder()
    f.create_room("r")
    for name in ("a", "c"):
        f.add_participant("r", name)
    f.publish("r", "a", Kind.AUDIO, A_AUDIO, 111, {AUDIO_LEVEL_URI: 1})
    f.publish("r", "a", Kind.VIDEO, A_VIDEO, 96)
    f.subscribe("r", "c", "a", "c<-a", legs(0xC0))
    f.activate("c<-a", 0.0)
    return f


def check_forwarder(f: Forwarder, data: bytes) -> None:
    """The whole core path from decrypted bytes: never raises, whatever arrives."""
    f.handle_rtp("r", "a", data, 1.0)
    f.handle_publisher_rtcp("r", "a", data, 1.0)
    f.handle_subscriber_rtcp("c<-a", data, 1.0)


class Queue:
    """Stands in for aioice's ``Connection``: it only records what the shield let through."""

    def __init__(self) -> None:
        self.passed: list[bytes] = []
        self._nominated: dict[int, CandidatePair] = {}
        self._check_list: list[CandidatePair] = []

    def data_received(self, data: bytes, component: int) -> None:
        self.passed.append(data)

    def request_received(self, *args: object) -> None:
        pass


def shielded() -> tuple[StunProtocol, Queue, Dropped]:
    queue = Queue()
    protocol = StunProtocol(queue)  # type: ignore[arg-type]
    protocol.local_candidate = Candidate("1", 1, "udp", 1, "127.0.0.1", 50000, "host")
    remote = Candidate("2", 1, "udp", 1, PEER[0], PEER[1], "host")
    queue._nominated[1] = CandidatePair(protocol, remote)
    queue._check_list.append(queue._nominated[1])
    dropped = Dropped()
    guard_protocol(protocol, dropped)
    return protocol, queue, dropped


def check_shield(data: bytes, addr: tuple[str, int]) -> None:
    protocol, queue, dropped = shielded()
    protocol.datagram_received(data, addr)
    counted = sum(dropped.as_dict().values())
    for passed in queue.passed:
        assert 0 < len(passed) <= MAX_DATAGRAM
        assert 19 < passed[0] < 64 or 127 < passed[0] < 192 or passed[0] < 4
        assert addr == PEER or passed[0] < 4
    assert counted + len(queue.passed) <= 1


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[name for name, _ in CORPUS])
def test_corpus(name: str, data: bytes) -> None:
    check_rtp(data)
    check_rtcp(data)
    check_forwarder(forwarder(), data)
    for addr in (PEER, ("127.0.0.1", 40001)):
        check_shield(data, addr)


def test_corpus_holds_the_hostile_inputs_of_issue_11() -> None:
    names = {name for name, _ in CORPUS}
    for layer in ("stun", "dtls", "rtp", "rtcp", "junk"):
        for size in (1500, 1501, 1601, 2048, 65507):
            assert f"{layer}-{size}.bin" in names


def test_oversized_and_foreign_datagrams_never_reach_aioice() -> None:
    big = dict(CORPUS)["rtp-1601.bin"]
    protocol, queue, dropped = shielded()
    protocol.datagram_received(big, PEER)
    protocol.datagram_received(big[:200], ("127.0.0.1", 40001))
    protocol.datagram_received(big[:200], PEER)
    assert queue.passed == [big[:200]]
    assert (dropped.oversized, dropped.foreign_source) == (1, 1)


@fuzz
@given(datagrams)
def test_rtp_parsing(data: bytes) -> None:
    check_rtp(data)


@fuzz
@given(datagrams)
def test_rtcp_parsing(data: bytes) -> None:
    check_rtcp(data)


@fuzz
@given(st.lists(datagrams, max_size=8))
def test_forwarding_core(packets: list[bytes]) -> None:
    f = forwarder()
    for data in packets:
        check_forwarder(f, data)


@fuzz
@given(
    st.one_of(datagrams, st.binary(min_size=20, max_size=200).map(lambda b: b"\x00\x01" + b)),
    st.sampled_from([PEER, ("127.0.0.1", 40001), ("10.0.0.1", 40000)]),
)
def test_shield(data: bytes, addr: tuple[str, int]) -> None:
    check_shield(data, addr)
