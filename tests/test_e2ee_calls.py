"""End-to-end encrypted calls through the real SFU process, with real aiortc bots.

The SFU here is ``tests/sfu_tap.py``: the real media node, its forwarding core recording every
RTP packet it is handed. What it records must be ciphertext to any decoder, while every bot
decodes every other; keys are logged as each bot's key schedule draws and receives them, so the
test can try recorded frames with exactly the keys a participant had.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RtpPacket

from directory.store import Store
from media.embedded import EmbeddedMedia
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.e2ee.keyblob import b64url
from signaling.sdk.e2ee.keyschedule import KeySchedule
from signaling.sdk.e2ee.sframe import (
    FrameDropped,
    FrameKey,
    decrypt_frame,
    encrypt_frame,
    frame_kid,
)
from signaling.sdk.softphone import Softphone, Summary
from tests import sfu_tap
from tests.conftest import Server, StoreTarget, start_server, stop_server, suite_config
from tests.e2ee_media import opus_periodicity, vp8_pictures
from tests.test_sfu_support import until

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Frame:
    publisher: str
    codec: str
    data: bytes


@dataclass
class Keys:
    """Every key each participant drew (with who was in the call then) or received."""

    drawn: dict[str, list[tuple[int, bytes, frozenset[str]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    held: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))

    def sender_key(self, publisher: str, kid: int) -> bytes | None:
        return next((key for k, key, _ in self.drawn[publisher] if k == kid), None)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Keys:
    log = Keys()
    membership, key_received = KeySchedule.membership, KeySchedule.key_received

    def drawing(self: KeySchedule, participants: Any, now: float) -> Any:
        effects = membership(self, participants, now)
        send = self.send
        if send is not None and (not log.drawn[self.me] or log.drawn[self.me][-1][0] != send.kid):
            log.drawn[self.me].append((send.kid, send.base_key, self.members))
            log.held[self.me].append(send.base_key)
        return effects

    def receiving(self: KeySchedule, sender: str, kid: int, base_key: bytes, now: float) -> Any:
        if sender in self.members:
            log.held[self.me].append(base_key)
        return key_received(self, sender, kid, base_key, now)

    monkeypatch.setattr(KeySchedule, "membership", drawing)
    monkeypatch.setattr(KeySchedule, "key_received", receiving)
    return log


@pytest.fixture
async def tapped(
    store: Store, store_target: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Server, Path]]:
    tap = tmp_path / "sfu.tap"
    monkeypatch.setenv(sfu_tap.TAP_ENV, str(tap))
    node = EmbeddedMedia(launcher=(sys.executable, "-m", "tests.sfu_tap"))
    node.start()
    config = suite_config(store_target.url, node, redis_cluster=store_target.cluster)
    test_server, running = await start_server(config)
    try:
        yield running, tap
    finally:
        await stop_server(test_server, running)
        node.stop()


def recorded_frames(tap: Path) -> list[Frame]:
    """The SFU's view reassembled into encoded frames: Opus packets, VP8 frames."""
    frames: list[Frame] = []
    video: dict[tuple[str, int, int], list[RtpPacket]] = {}
    for record in sfu_tap.read(tap):
        packet = RtpPacket.parse(record.packet)
        if not packet.payload:
            continue  # padding
        if record.kind == "a":
            frames.append(Frame(record.publisher, "opus", packet.payload))
        elif record.kind == "v":
            video.setdefault((record.publisher, packet.ssrc, packet.timestamp), []).append(packet)
    for (publisher, _, _), packets in video.items():
        packets.sort(key=lambda p: p.sequence_number)
        data = b"".join(vp8_depayload(p.payload) for p in packets)
        frames.append(Frame(publisher, "vp8", data))
    return frames


def opens(frame: Frame, base_keys: list[bytes]) -> bytes | None:
    """The frame decrypted with any of these base keys (under the frame's own kid), if any."""
    try:
        kid, ctr, cut, end = frame_kid(frame.codec, frame.data)
    except FrameDropped:
        return None
    for base_key in base_keys:
        try:
            return decrypt_frame(FrameKey(base_key, kid), frame.data, ctr, cut, end)
        except FrameDropped:
            continue
    return None


def kid_of(frame: Frame) -> int | None:
    try:
        return frame_kid(frame.codec, frame.data)[0]
    except FrameDropped:
        return None


def assert_only_ciphertext(frames: list[Frame], keys: Keys, publishers: set[str]) -> None:
    """No decoder makes anything of what the SFU saw; the senders' own keys open it all."""
    assert {f.publisher for f in frames} == publishers
    for publisher in publishers:
        video = [f for f in frames if f.publisher == publisher and f.codec == "vp8"]
        audio = [f for f in frames if f.publisher == publisher and f.codec == "opus"]
        assert len(video) > 10 and len(audio) > 50, (publisher, len(video), len(audio))
        assert vp8_pictures([f.data for f in video]) == 0
        assert abs(opus_periodicity([f.data for f in audio])) < 0.3
        own = [key for _, key, _ in keys.drawn[publisher]]
        opened_video = [opens(f, own) for f in video]
        opened_audio = [opens(f, own) for f in audio]
        assert all(x is not None for x in opened_video + opened_audio), publisher
        assert vp8_pictures([x for x in opened_video if x]) > 0
        assert opus_periodicity([x for x in opened_audio if x]) > 0.9


async def _stop(tasks: list[asyncio.Task[Summary]]) -> None:
    """A failed test's calls end with it (their sessions close their connections)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _joined(ids: dict[str, str], name: str) -> Callable[[dict[str, Any]], None]:
    def emit(event: dict[str, Any]) -> None:
        if event.get("event") == "joined":
            ids[name] = event["participant"]

    return emit


async def test_the_sfu_forwards_only_ciphertext_and_every_bot_decodes_every_other(
    tapped: tuple[Server, Path], keys: Keys
) -> None:
    server, tap = tapped
    ids: dict[str, str] = {}
    phones = {
        name: Softphone(await server.signup(name), video=True, emit=_joined(ids, name))
        for name in ("alice", "bob", "carol")
    }
    try:
        for name in ("bob", "carol"):
            await phones[name].line.open()
        summaries = await asyncio.wait_for(
            asyncio.gather(
                phones["alice"].group(["bob", "carol"], 6.0),
                phones["bob"].answer(5.0),
                phones["carol"].answer(5.0),
            ),
            60,
        )
    finally:
        for phone in phones.values():
            await phone.close()
    for summary in summaries:
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received == 2, summary.as_event()
    assert_only_ciphertext(recorded_frames(tap), keys, set(ids.values()))


async def test_a_leaver_cannot_decrypt_later_media_nor_a_late_joiner_earlier_media(
    tapped: tuple[Server, Path], keys: Keys
) -> None:
    server, tap = tapped
    ids: dict[str, str] = {}
    alice = Softphone(await server.signup("alice"), video=True, emit=_joined(ids, "alice"))
    bob = Softphone(await server.signup("bob"), video=True, emit=_joined(ids, "bob"))
    carol = Softphone(await server.signup("carol"), video=True, emit=_joined(ids, "carol"))
    tasks: list[asyncio.Task[Summary]] = []
    try:
        for phone in (bob, carol):
            await phone.line.open()
        hosting = asyncio.create_task(alice.group(["bob", "carol"], 12.0))
        leaving = asyncio.create_task(bob.answer(6.0))
        tasks += [hosting, leaving]
        # Carol answers only once Alice and Bob have seen a good part of each other's video.
        await until(
            lambda: all(
                p.session and p.session.total().video_frames_received >= 15 for p in (alice, bob)
            ),
            limit_s=30,
            what="alice and bob decode each other",
        )
        joining = asyncio.create_task(carol.answer(None))
        tasks.append(joining)
        results = await asyncio.wait_for(asyncio.gather(hosting, leaving, joining), 60)
    finally:
        await _stop(tasks)
        for phone in (alice, bob, carol):
            await phone.close()
    assert all(r.outcome == "connected" for r in results), [r.as_event() for r in results]
    frames = recorded_frames(tap)
    a, b, c = ids["alice"], ids["bob"], ids["carol"]

    # Keys drawn after Bob had been a member and then was not any more: sent after he left.
    after_leaving: dict[str, set[int]] = {}
    # Keys drawn before the first one given to Carol: in use before she joined.
    before_joining: dict[str, set[int]] = {}
    for publisher in (a, b):
        drawn = keys.drawn[publisher]
        was_in = [i for i, (_, _, members) in enumerate(drawn) if b in members]
        if publisher != b and was_in:
            after_leaving[publisher] = {
                kid for kid, _, members in drawn[was_in[0] :] if b not in members
            }
        first_with_carol = next(
            (i for i, (_, _, members) in enumerate(drawn) if c in members), len(drawn)
        )
        before_joining[publisher] = {kid for kid, _, _ in drawn[:first_with_carol]}
    later = [f for f in frames if kid_of(f) in after_leaving.get(f.publisher, set())]
    earlier = [f for f in frames if kid_of(f) in before_joining.get(f.publisher, set())]
    assert len([f for f in later if f.codec == "vp8"]) > 5, "no video after bob left"
    assert len([f for f in earlier if f.codec == "vp8"]) > 5, "no video before carol joined"
    # The test's frames are real: their senders' keys open them.
    for frame in later + earlier:
        own = keys.sender_key(frame.publisher, kid_of(frame) or 0)
        assert own is not None and opens(frame, [own]) is not None
    assert not [f for f in later if opens(f, keys.held[b])], (
        "bob decrypted media sent after he left"
    )
    assert not [f for f in earlier if opens(f, keys.held[c])], "carol decrypted earlier media"


async def test_a_hide_my_ip_call_through_the_sfu_is_end_to_end_encrypted(
    tapped: tuple[Server, Path], keys: Keys
) -> None:
    server, tap = tapped
    alice = Softphone(await server.signup("alice"), video=True)
    bob_client = await server.signup("bob")
    await bob_client.update(AccountUpdate(hide_ip=True))
    bob = Softphone(bob_client, video=True)
    await bob.line.open()
    try:
        answering = asyncio.create_task(bob.answer(duration_s=None))
        caller = await alice.call("bob", duration_s=5.0)
        callee = await asyncio.wait_for(answering, 15)
    finally:
        await alice.close()
        await bob.close()
    for summary in (caller, callee):
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received == 1
        assert summary.media.video_frames_received > 0
    assert len(keys.drawn) == 2
    assert_only_ciphertext(recorded_frames(tap), keys, set(keys.drawn))


async def test_bad_keys_and_frames_are_dropped_and_counted_and_the_call_goes_on(
    server: Server,
) -> None:
    ids: dict[str, str] = {}
    alice = Softphone(await server.signup("alice"), video=True, emit=_joined(ids, "alice"))
    bob = Softphone(await server.signup("bob"), video=True, emit=_joined(ids, "bob"))
    tasks: list[asyncio.Task[Summary]] = []
    try:
        await bob.line.open()
        hosting = asyncio.create_task(alice.group(["bob"], 10.0))
        answering = asyncio.create_task(bob.answer(None))
        tasks += [hosting, answering]
        # Past the replay window of Bob's key at Alice: CTR 0 is too old by then.
        await until(
            lambda: bool(
                alice.session and alice.session.keys.crypto.decrypted[ids.get("bob", "")] > 200
            ),
            limit_s=30,
            what="alice decrypts bob",
        )
        assert alice.session is not None and bob.session is not None
        at_alice, at_bob = alice.session.keys, bob.session.keys
        call_id = alice.session.call_id
        send = at_bob.schedule.send
        assert send is not None
        frame = bytes([0x31, 0x05, 0x00]) + bytes(200)  # a VP8 delta frame
        sealed = encrypt_frame("vp8", send.frame_key, 0, frame)
        # Far ahead of Bob's counter: not replays, so only the tag can refuse them.
        ahead = encrypt_frame("vp8", send.frame_key, 1 << 40, frame)
        for bad, reason in (
            (sealed, "replayed"),
            (ahead[:-4], "auth_failed"),  # truncated
            (ahead[:4], "malformed"),
            (encrypt_frame("vp8", FrameKey(send.base_key, 999), 5, frame), "unknown_key"),
            (encrypt_frame("vp8", FrameKey(bytes(16), send.kid), 1 << 41, frame), "auth_failed"),
        ):
            before = at_alice.counters.get(reason, 0)
            assert at_alice.crypto.decrypt("vp8", ids["bob"], bad) is None
            assert at_alice.counters[reason] == before + 1, reason
        # A blob that does not open, routed by the real server from Bob to Alice.
        garbage = m.MediaKeyFor(participant=ids["alice"], blob=b64url(os.urandom(128)))
        await bob.line.send(m.MediaKeys(call_id=call_id, kid=send.kid + 7, keys=[garbage]))
        await until(lambda: at_alice.counters.get("bad_blob", 0) == 1, what="bad blob counted")
        # Alice asked Bob for his key again, at most once a second: Bob answers.
        await until(
            lambda: at_bob.counters.get("key_requests_answered", 0) >= 1, what="a key request"
        )
        assert at_alice.counters.get("key_requests_held", 0) >= 1
        # The call went on.
        decrypted = at_alice.crypto.decrypted[ids["bob"]]
        await until(
            lambda: at_alice.crypto.decrypted[ids["bob"]] > decrypted + 20, what="media goes on"
        )
        results = await asyncio.wait_for(asyncio.gather(hosting, answering), 30)
    finally:
        await _stop(tasks)
        await alice.close()
        await bob.close()
    assert all(r.outcome == "connected" for r in results)
