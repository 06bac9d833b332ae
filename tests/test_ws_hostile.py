"""Hostile input on the call WebSocket: typed errors or the right close code, and a call on
another connection carries on regardless."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from signaling.protocol import messages as m
from signaling.protocol.closes import MAX_MESSAGE_BYTES
from signaling.sdk.client import Client
from signaling.sdk.line import Line, LineClosed
from signaling.ws import endpoint
from tests.conftest import Server, befriend


@pytest.fixture
async def live_call(server: Server) -> AsyncIterator[tuple[Line, Line, str]]:
    """A connected call between two other people, to prove it is not disturbed."""
    carol, dave = await server.signup("carol"), await server.signup("dave")
    await befriend(carol, dave)  # peer to peer: no relay between contacts
    c, d = Line(carol), Line(dave)
    await c.open()
    await d.open()
    await c.send(m.Invite(handle="dave"))
    call_id = (await c.expect(m.Ringing)).call_id
    await d.expect(m.Incoming)
    await d.send(m.Accept(call_id=call_id))
    await c.expect(m.Accepted)
    await d.expect(m.Accepted)
    yield c, d, call_id
    await c.close()
    await d.close()


async def _still_works(live: tuple[Line, Line, str]) -> None:
    c, d, call_id = live
    await c.send(m.Ice(call_id=call_id, candidate="candidate:9 1 udp 1 127.0.0.1 9 typ host"))
    assert (await d.expect(m.PeerIce)).call_id == call_id


async def _attacker(server: Server) -> Line:
    line = Line(await server.signup("mallory"))
    await line.open()
    return line


async def _closed_with(line: Line) -> int | None:
    with pytest.raises(LineClosed) as closed:
        while True:
            await line.receive(within=5)
    return closed.value.code


async def test_non_json_closes_1007(server: Server, live_call: tuple[Line, Line, str]) -> None:
    line = await _attacker(server)
    await line.send_raw("this is not json {")
    assert await _closed_with(line) == 1007
    await _still_works(live_call)
    await line.close()


async def test_binary_frames_close_1003(server: Server, live_call: tuple[Line, Line, str]) -> None:
    line = await _attacker(server)
    await line.send_raw(b"\x00\x01")
    assert await _closed_with(line) == 1003
    await _still_works(live_call)
    await line.close()


async def test_oversized_message_closes_1009(
    server: Server, live_call: tuple[Line, Line, str]
) -> None:
    line = await _attacker(server)
    await line.send_raw(json.dumps({"type": "ping", "pad": "x" * 100_000}))
    assert await _closed_with(line) == 1009
    await _still_works(live_call)
    await line.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "teleport"}, "invalid_message"),
        ({"type": "invite"}, "invalid_message"),
        ({"type": "invite", "handle": "bob", "account_id": "0" * 32}, "invalid_message"),
        ({"type": "invite", "handle": "x" * 500}, "invalid_message"),
        ({"type": "invite", "handle": "no spaces allowed"}, "invalid_handle"),
        ({"type": "accept", "call_id": "nope"}, "invalid_message"),
        ({"type": "accept", "call_id": "0" * 32}, "unknown_call"),
        ({"type": "hangup", "call_id": "0" * 32}, "unknown_call"),
        ({"type": "sdp", "call_id": "0" * 32, "kind": "offer", "sdp": "v=0"}, "unknown_call"),
        ({"type": "sdp", "call_id": "0" * 32, "kind": "pranswer", "sdp": "v=0"}, "invalid_message"),
        ({"type": "ice", "call_id": "0" * 32, "candidate": 7}, "invalid_message"),
        ({"type": "ping", "extra": 1}, "invalid_message"),
        ({"type": "auth", "token": "again"}, "already_authenticated"),
        ({"type": "group_invite", "handles": []}, "invalid_message"),
        ({"type": "group_invite", "handles": ["bob"] * 16}, "invalid_message"),
        ({"type": "group_invite", "handles": ["x" * 500]}, "invalid_message"),
        ({"type": "group_invite", "handles": "bob"}, "invalid_message"),
        ({"type": "group_invite", "handles": ["bob", "not a handle"]}, "invalid_handle"),
        ({"type": "group_invite", "handles": ["bob"], "media": "smell"}, "invalid_message"),
        ({"type": "publish", "call_id": "0" * 32, "sdp": ""}, "invalid_message"),
        ({"type": "publish", "call_id": "0" * 32, "sdp": "v" * 40_000}, "invalid_message"),
        ({"type": "publish", "call_id": "0" * 32, "sdp": "v=0"}, "unknown_call"),
        (
            {"type": "subscribe_answer", "call_id": "0" * 32, "subscription": "", "sdp": "v=0"},
            "invalid_message",
        ),
        (
            {"type": "subscribe_answer", "call_id": "0" * 32, "subscription": "s", "sdp": "v=0"},
            "unknown_call",
        ),
        (
            {"type": "mute", "call_id": "0" * 32, "audio_muted": "yes", "video_muted": False},
            "invalid_message",
        ),
        (
            {"type": "mute", "call_id": "0" * 32, "audio_muted": True, "video_muted": False},
            "unknown_call",
        ),
        (
            {
                "type": "quality",
                "call_id": "0" * 32,
                "rtt_ms": -1,
                "jitter_ms": 0,
                "loss": 0,
                "bitrate_kbps": 0,
            },
            "invalid_message",
        ),
        (
            {
                "type": "quality",
                "call_id": "0" * 32,
                "rtt_ms": 1,
                "jitter_ms": 0,
                "loss": 2,
                "bitrate_kbps": 0,
            },
            "invalid_message",
        ),
        ([], "invalid_message"),
    ],
)
async def test_bad_messages_get_typed_errors_and_the_connection_stays(
    server: Server, live_call: tuple[Line, Line, str], frame: object, code: str
) -> None:
    line = await _attacker(server)
    await line.send_raw(json.dumps(frame))
    error = await line.expect(m.Error)
    assert error.code == code and error.detail
    await line.send(m.Ping())
    await line.expect(m.Pong)
    await _still_works(live_call)
    await line.close()


async def test_someone_elses_call_looks_like_no_call(
    server: Server, live_call: tuple[Line, Line, str]
) -> None:
    _, _, call_id = live_call
    line = await _attacker(server)
    for message in (
        m.Hangup(call_id=call_id),
        m.Accept(call_id=call_id),
        m.Description(call_id=call_id, kind="offer", sdp="v=0"),
    ):
        await line.send(message)
        assert (await line.expect(m.Error)).code == "unknown_call"
    await _still_works(live_call)
    await line.close()


async def test_out_of_order_messages_on_ones_own_call(server: Server) -> None:
    alice, bob = await server.signup("alice"), await server.signup("bob")
    async with Line(alice) as a, Line(bob) as b:
        await a.open()
        await b.open()
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await a.send(m.Description(call_id=call_id, kind="offer", sdp="v=0"))
        assert (await a.expect(m.Error)).code == "not_in_call"  # not answered yet
        await a.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Error)).code == "not_ringing"  # callers do not answer
        await b.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "declined"
        assert (await b.expect(m.Ended)).reason == "declined"
        await b.send(m.Hangup(call_id=call_id))
        assert (await b.expect(m.Error)).code == "unknown_call"  # it is over


async def test_a_flood_is_throttled_then_closed(
    server: Server, live_call: tuple[Line, Line, str]
) -> None:
    line = await _attacker(server)
    for _ in range(200):
        await line.send(m.Ping())
    codes: list[str] = []
    with pytest.raises(LineClosed) as closed:
        while True:
            message = await line.receive(within=5)
            if isinstance(message, m.Error):
                codes.append(message.code)
    assert closed.value.code == 1008
    # protocol.md 11.3: the over-limit frame that closes the connection is answered too.
    assert codes == ["rate_limited"] * (endpoint.MAX_VIOLATIONS + 1)
    await _still_works(live_call)
    await line.close()


async def test_no_auth_is_closed_1008(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            server.url.replace("http", "ws") + "/v1/ws", protocols=["callbook.v1"]
        )
        await ws.send_str(json.dumps({"type": "ping"}))
        error = await ws.receive_json()
        assert error["type"] == "error" and error["code"] == "auth_required"
        await ws.receive()
        assert ws.close_code == 1008
        ws = await http.ws_connect(
            server.url.replace("http", "ws") + "/v1/ws",
            protocols=["callbook.v1", "bearer.not-a-token"],
        )
        error = await ws.receive_json()
        assert error["code"] == "token_invalid"
        await ws.receive()
        assert ws.close_code == 1008


async def test_token_in_a_first_message_works_too(server: Server) -> None:
    alice = await server.signup("alice")
    line = Line(alice)
    welcome = await line.open(in_header=False)
    assert welcome.account_id == alice.profile.account_id  # type: ignore[union-attr]
    await line.close()


async def test_foreign_origins_are_refused(server: Server) -> None:
    alice = await server.signup("alice")
    token = await alice.token()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                server.url.replace("http", "ws") + "/v1/ws",
                protocols=["callbook.v1", f"bearer.{token}"],
                headers={"Origin": "https://evil.example"},
            )
        assert refused.value.status == 403
        ws = await http.ws_connect(
            server.url.replace("http", "ws") + "/v1/ws",
            protocols=["callbook.v1", f"bearer.{token}"],
            headers={"Origin": server.url},
        )
        assert (await ws.receive_json())["type"] == "welcome"
        await ws.close()


async def test_a_second_connection_of_a_device_replaces_the_first(server: Server) -> None:
    alice = await server.signup("alice")
    first, second = Line(alice), Line(Client(server.url, alice.profile))
    await first.open()
    await second.open()
    assert await _closed_with(first) == 4000
    await second.send(m.Ping())
    await second.expect(m.Pong)
    await first.close()
    await second.close()
    await second.client.close()


@pytest.mark.parametrize(
    "sdp",
    ["v=0\r\n", "this is not SDP", "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"],
    ids=["version_only", "garbage", "no_media_section"],
)
async def test_a_malformed_sdp_in_publish_is_a_client_error(server: Server, sdp: str) -> None:
    """Not ``unavailable`` ("the media server cannot take a call now"), which told the client
    to retry what can never succeed: ``invalid_sdp``, and the connection and call go on."""
    alice, bob = await server.signup("alice"), await server.signup("bob")
    async with Line(alice) as a, Line(bob) as b:
        await a.open()
        await b.open()
        await a.send(m.GroupInvite(handles=["bob"], media="audio", ref="g"))
        joined = await a.expect(m.Joined)
        await a.expect(m.Participants)
        await a.send(m.Publish(call_id=joined.call_id, sdp=sdp))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("invalid_sdp", joined.call_id)
        assert error.detail
        # A subscription nobody offered is refused the same way, not as an outage.
        await a.send(m.SubscribeAnswer(call_id=joined.call_id, subscription="s1", sdp="v=0\r\n"))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("unknown_subscription", joined.call_id)
        await a.send(m.Ping())
        await a.expect(m.Pong)
        # The call itself is untouched: the invitee still rings and can join.
        incoming = await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=incoming.call_id))
        assert (await b.expect(m.Joined)).call_id == joined.call_id


def _message_of(size: int) -> str:
    """A JSON message of exactly ``size`` UTF-8 bytes (a ping with a field pings lack)."""
    head, tail = '{"type":"ping","pad":"', '"}'
    text = head + "x" * (size - len(head) - len(tail) - 2) + "é" + tail
    assert len(text.encode()) == size
    return text


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "permessage_deflate"])
async def test_a_message_of_exactly_64_kib_is_read_and_one_byte_more_closes_1009(
    server: Server, compress: int
) -> None:
    """64 KiB is the documented maximum (11.3); a frame of exactly that many bytes was closed
    with 1009."""
    alice = await server.signup("alice")
    protocols = ("callbook.v1", f"bearer.{await alice.token()}")
    url = server.url.replace("http", "ws") + "/v1/ws"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, protocols=protocols, compress=compress)
        assert (await ws.receive_json())["type"] == "welcome"
        await ws.send_str(_message_of(MAX_MESSAGE_BYTES))
        assert (await ws.receive_json())["code"] == "invalid_message"  # read, and refused
        await ws.send_str(json.dumps({"type": "ping"}))
        assert (await ws.receive_json())["type"] == "pong"
        await ws.send_str(_message_of(MAX_MESSAGE_BYTES + 1))
        assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1009
        await ws.close()
