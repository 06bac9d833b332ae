"""The control API in-process: auth, validation, caps, and hostile packets at the seams."""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from media.config import MediaConfig
from media.control import NODE, MediaControl, MediaControlError, create_app
from media.node import MediaNode
from tests.test_sfu_rtp import rtp
from tests.test_sfu_support import Peer, new_pc, publisher_offer, until

SECRET = "s3cret-for-tests"

Started = tuple[TestServer, MediaControl]
StartSfu = Callable[..., Awaitable[Started]]


@pytest.fixture
async def start_sfu() -> AsyncIterator[StartSfu]:
    running: list[Started] = []

    async def start(**changes: object) -> Started:
        config = MediaConfig(**{"secret": SECRET, **changes})  # type: ignore[arg-type]
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        control = MediaControl(str(server.make_url("")), SECRET)
        running.append((server, control))
        return server, control

    yield start
    for server, control in running:
        await control.close()
        await server.close()


async def _offer() -> str:
    pc = new_pc()
    try:
        return await publisher_offer(pc)
    finally:
        await pc.close()


async def test_health_needs_no_secret_everything_else_does(start_sfu: StartSfu) -> None:
    server, control = await start_sfu()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200 and await response.json() == {"status": "ok"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
            for method, path in (("GET", "/v1/stats"), ("POST", "/v1/rooms"), ("GET", "/metrics")):
                async with http.request(method, base + path, headers=headers) as response:
                    assert response.status == 401
                    assert response.content_type == "application/problem+json"
                    body = await response.json()
                    assert body["code"] == "unauthorized" and body["status"] == 401
    assert (await control.stats())["rooms"] == 0
    auth = {"Authorization": f"Bearer {SECRET}"}
    async with aiohttp.ClientSession(headers=auth) as http, http.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert "callbook_sfu_forwarded_packets_total 0.0" in text
    assert "callbook_sfu_rooms 0.0" in text
    assert "callbook_sfu_legs_failed_total 0.0" in text
    assert 'callbook_sfu_dropped_packets_total{reason="foreign_source"} 0.0' in text
    with pytest.raises(MediaControlError) as caught:
        await MediaControl(base, "nope").stats()
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/rooms", b"{", "invalid_request"),
        ("/v1/rooms", b"[]", "invalid_request"),
        ("/v1/rooms", b'{"room": "r", "extra": 1}', "invalid_request"),
        ("/v1/rooms", b'{"room": ""}', "invalid_request"),
        ("/v1/rooms", b'{"room": "a/b"}', "invalid_request"),
        ("/v1/rooms", b'{"room": "r", "max_participants": 0}', "invalid_request"),
        ("/v1/rooms", b'{"room": "r", "max_participants": "9"}', "invalid_request"),
        ("/v1/rooms/r/participants", b'{"participant": "p"}', "invalid_request"),
        (
            "/v1/rooms/r/participants",
            b'{"participant": "p", "offer": {"type": "answer", "sdp": "v=0"}}',
            "invalid_request",
        ),
        (
            "/v1/rooms/r/participants",
            b'{"participant": "p", "offer": {"type": "offer", "sdp": "not sdp"}}',
            "invalid_sdp",
        ),
        ("/v1/rooms/nope/participants/p/subscriptions", b'{"publisher": "q"}', "room_not_found"),
        (
            "/v1/rooms/r/participants/p/subscriptions",
            b'{"publisher": "q"}',
            "participant_not_found",
        ),
        ("/v1/nothing", b"{}", "not_found"),
    ],
)
async def test_validation_errors_are_problems_with_codes(
    start_sfu: StartSfu, path: str, body: bytes, code: str
) -> None:
    server, control = await start_sfu()
    await control.create_room("r")
    headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    url = server.make_url(path)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=headers) as response,
    ):
        assert response.content_type == "application/problem+json"
        problem = await response.json()
    assert problem["code"] == code, problem
    assert problem["status"] == response.status and response.status in (400, 404)
    assert problem["type"].endswith(code) and problem["title"] and problem["detail"]


async def test_rooms_are_idempotent_and_capped(start_sfu: StartSfu) -> None:
    server, control = await start_sfu(max_rooms=1)
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for expected in (201, 200):
            async with http.post(server.make_url("/v1/rooms"), json={"room": "r"}) as response:
                assert response.status == expected and await response.json() == {"room": "r"}
    with pytest.raises(MediaControlError) as caught:
        await control.create_room("s")
    assert (caught.value.status, caught.value.code) == (429, "too_many_rooms")
    await control.delete_room("r")
    await control.create_room("s")
    with pytest.raises(MediaControlError) as missing:
        await control.delete_room("r")
    assert (missing.value.status, missing.value.code) == (404, "room_not_found")


async def test_room_full_and_duplicate_participants(start_sfu: StartSfu) -> None:
    _, control = await start_sfu()
    await control.create_room("r", max_participants=2)
    offer = await _offer()
    assert "a=recvonly" in await control.join("r", "a", offer)
    with pytest.raises(MediaControlError) as duplicate:
        await control.join("r", "a", offer)
    assert (duplicate.value.status, duplicate.value.code) == (409, "participant_exists")
    await control.join("r", "b", await _offer())
    with pytest.raises(MediaControlError) as full:
        await control.join("r", "c", await _offer())
    assert (full.value.status, full.value.code) == (409, "room_full")
    with pytest.raises(MediaControlError) as self_sub:
        await control.subscribe("r", "a", "a")
    assert self_sub.value.code == "invalid_state"
    sub_id, sdp = await control.subscribe("r", "a", "b")
    assert "a=sendonly" in sdp and "VP8" in sdp and "opus" in sdp
    # video carries an RTX stream for padding probes (media/probing.py), audio none
    assert sdp.count("a=ssrc-group:FID") == 1 and "rtx/90000" in sdp
    with pytest.raises(MediaControlError) as unknown:
        await control.answer("r", "a", "nope", "v=0")
    assert (unknown.value.status, unknown.value.code) == (404, "subscription_not_found")
    with pytest.raises(MediaControlError) as wrong_owner:
        await control.answer("r", "b", sub_id, "v=0")
    assert wrong_owner.value.code == "subscription_not_found"
    stats = await control.room_stats("r")
    assert stats["subscriptions"] == 1 and len(stats["participants"]) == 2
    await control.leave("r", "b")
    assert (await control.room_stats("r"))["subscriptions"] == 0
    await control.join("r", "c", await _offer())  # b's seat is free again


async def test_offer_without_a_common_codec_is_rejected(start_sfu: StartSfu) -> None:
    _, control = await start_sfu()
    await control.create_room("r")
    offer = await _offer()
    lines = [ln for ln in offer.splitlines() if "VP8" not in ln and "opus" not in ln]
    with pytest.raises(MediaControlError) as caught:
        await control.join("r", "p", "\r\n".join(lines) + "\r\n")
    assert (caught.value.status, caught.value.code) == (400, "invalid_sdp")
    assert (await control.room_stats("r"))["participants"] == []


@pytest.mark.slow
async def test_hostile_packets_through_an_admitted_transport(start_sfu: StartSfu) -> None:
    server, control = await start_sfu()
    node: MediaNode = server.app[NODE]
    await control.create_room("r")
    alice, bob = Peer("alice", control, "r"), Peer("bob", control, "r")
    try:
        await alice.publish()
        await bob.publish()
        down = await bob.subscribe("alice")
        await until(lambda: bob.decoded("alice")[1] > 3, what="bob decodes alice")
        [uplink_dtls] = node.uplinks[("r", "alice")].dtls
        hostile_rtp = [
            b"",
            b"\x80",
            b"\x80\x60\x00\x01",  # truncated header
            b"\x8f" + os.urandom(20),  # CSRC count beyond the packet
            b"\x90\x60" + bytes(10) + b"\xbe\xde\xff\xff",  # extension length beyond the packet
            b"\xa0\x60" + bytes(10) + b"\xff",  # padding beyond the packet
            rtp(ssrc=0x0BADF00D, pt=96),  # wrong SSRC
            os.urandom(500),
        ]
        for data in hostile_rtp * 5:
            await uplink_dtls._handle_rtp_data(data, 0)
        for data in (b"", b"\x81\xc9\x00\x09", os.urandom(64), b"\x80\xc8" + bytes(6)):
            await uplink_dtls._handle_rtcp_data(data)
        downlink = node.downlinks[down.subscription]
        assert downlink.transport is not None
        await downlink.transport._handle_rtcp_data(b"\x81\xce\x00\x05" + bytes(4))
        await downlink.transport._handle_rtcp_data(struct.pack("!BBHII", 0x81, 205, 3, 1, 2))
        dropped = (await control.stats())["dropped"]
        assert dropped["malformed"] >= 30 and dropped["unknown_ssrc"] >= 5
        before = bob.decoded("alice")[1]
        await until(lambda: bob.decoded("alice")[1] > before + 5, what="still forwarding")
    finally:
        await alice.close()
        await bob.close()


async def test_unanswered_subscriptions_are_reaped(
    start_sfu: StartSfu, monkeypatch: pytest.MonkeyPatch
) -> None:
    import media.node

    monkeypatch.setattr(media.node, "UNANSWERED_TTL_S", 0.0)
    server, control = await start_sfu()
    node: MediaNode = server.app[NODE]
    await control.create_room("r")
    await control.join("r", "a", await _offer())
    await control.join("r", "b", await _offer())
    sub_id, _ = await control.subscribe("r", "a", "b")
    assert sub_id in node.downlinks
    await until(lambda: not node.downlinks, limit_s=5, what="the unanswered offer reaped")
    assert (await control.room_stats("r"))["subscriptions"] == 0
    with pytest.raises(MediaControlError) as caught:
        await control.answer("r", "a", sub_id, "v=0")
    assert caught.value.code == "subscription_not_found"
