"""Accepting a Chromium simulcast offer: the answer gets a=rid / a=simulcast and the RID
extension; the SFU files the video as a layered track."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.bundle import Numbering, shape_offer
from media.forwarding import Kind
from media.peer import answer_uplink, new_peer_connection, parse_sdp
from media.simulcast_sdp import (
    REPAIRED_RID_URI,
    RID_URI,
    accept_simulcast,
    accepted_simulcast,
    restore_simulcast,
    simulcast_sections,
)

CHROMIUM_OFFER = (Path(__file__).parent / "data" / "simulcast" / "chromium_offer.sdp").read_text()


def test_the_chromium_offer_sends_three_rids_with_the_rid_extension() -> None:
    [section] = simulcast_sections(CHROMIUM_OFFER)
    assert (section.index, section.rids) == (1, ("q", "h", "f"))
    assert (section.rid_ext_id, section.repaired_ext_id) == (10, 11)


def _video(rids_line: str, extmap: str = f"a=extmap:10 {RID_URI}") -> str:
    return "\r\n".join(
        [
            "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0", extmap,
            "a=rid:a send", "a=rid:b send", "a=rid:c send", "a=rid:d send", "a=rid:x recv",
            rids_line,
        ]
    ) + "\r\n"  # fmt: skip


@pytest.mark.parametrize(
    ("line", "rids"),
    [
        ("a=simulcast:send a;b;c", ("a", "b", "c")),
        ("a=simulcast:send a;~b;c", ("a", "b", "c")),  # paused in the offer: still a layer
        ("a=simulcast:send a,x;b", ("a", "b")),  # alternatives: the first
        ("a=simulcast:send a;b;c;d", ("a", "b", "c")),  # at most three layers
        ("a=simulcast:send a;zz;b", ("a", "b")),  # a rid never offered
        ("a=simulcast:send a;x", ()),  # x is a recv rid: one layer is no simulcast
        ("a=simulcast:recv a;b", ()),
        ("a=simulcast:send a;a", ()),
    ],
)
def test_offered_rids(line: str, rids: tuple[str, ...]) -> None:
    found = simulcast_sections(_video(line))
    assert (found[0].rids if found else ()) == rids


def test_no_rid_extension_no_simulcast() -> None:
    assert simulcast_sections(_video("a=simulcast:send a;b", extmap="a=extmap:3 urn:x")) == []


def test_an_answer_without_simulcast_sections_is_unchanged() -> None:
    answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n"
    assert accept_simulcast(answer, answer) == answer


async def test_aiortc_answers_chromium_simulcast_and_files_a_layered_video() -> None:
    pc = new_peer_connection()
    try:
        answer, published = await answer_uplink(pc, CHROMIUM_OFFER)
    finally:
        await pc.close()
    video = answer[answer.index("m=video") :]
    assert f"a=extmap:10 {RID_URI}" in video and f"a=extmap:11 {REPAIRED_RID_URI}" in video
    assert [line for line in video.splitlines() if line.startswith("a=rid:")] == [
        "a=rid:q recv",
        "a=rid:h recv",
        "a=rid:f recv",
    ]
    assert "a=simulcast:recv q;h;f" in video.splitlines()
    assert "a=recvonly" in video.splitlines()
    kinds = {(p.kind, p.rids) for p in published}
    assert kinds == {(Kind.AUDIO, ()), (Kind.VIDEO, ("q", "h", "f"))}
    [layered] = [p for p in published if p.rids]
    assert layered.extensions[RID_URI] == 10
    assert layered.payload_type == 96  # VP8
    # the answer's extension ids are unique within the section
    ids = [line.split()[0] for line in video.splitlines() if line.startswith("a=extmap:")]
    assert len(ids) == len(set(ids))


async def test_the_sfus_later_offers_on_one_connection_keep_accepting_simulcast() -> None:
    """A re-offer without a=simulcast:recv would make Chromium drop to its lowest layer."""
    pc = new_peer_connection()
    try:
        answer, _ = await answer_uplink(pc, CHROMIUM_OFFER)
        numbering = Numbering.of(parse_sdp(CHROMIUM_OFFER), parse_sdp(answer))
        numbering.simulcast = accepted_simulcast(answer)
        created = await pc.createOffer()
        offer = shape_offer(created.sdp, numbering, set())
    finally:
        await pc.close()
    video = offer[offer.index("m=video") :].splitlines()
    assert [line for line in video if line.startswith("a=rid:")] == [
        "a=rid:q recv",
        "a=rid:h recv",
        "a=rid:f recv",
    ]
    assert "a=simulcast:recv q;h;f" in video
    assert any(line.startswith("a=extmap:10 ") and RID_URI in line for line in video)
    audio = offer[: offer.index("m=video")]
    assert "a=simulcast" not in audio
    assert restore_simulcast(offer, {}) == offer
