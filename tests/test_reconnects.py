"""A device reconnecting in a loop is refused before the upgrade, cheaply and with a typed answer;
other devices are not."""

from __future__ import annotations

import aiohttp
import pytest

from signaling.protocol import messages as m
from signaling.sdk.line import Line
from signaling.ws.reconnects import ReconnectThrottle
from tests.conftest import MakeServer

BURST = 3
EVERY_S = 600.0  # no refill within a test: refusals do not depend on the machine's speed


async def _connect(http: aiohttp.ClientSession, url: str, token: str) -> dict[str, object]:
    async with http.ws_connect(url, protocols=["callbook.v1", f"bearer.{token}"]) as ws:
        first: dict[str, object] = await ws.receive_json()
        return first


async def test_a_device_reconnecting_in_a_loop_is_refused_before_the_upgrade(
    make_server: MakeServer,
) -> None:
    server = await make_server(reconnect_burst=BURST, reconnect_every_s=EVERY_S)
    alice, bob = await server.signup("alice"), await server.signup("bob")
    url = Line(alice).url
    token = await alice.token()
    async with aiohttp.ClientSession() as http:
        for _ in range(BURST):
            assert (await _connect(http, url, token))["type"] == "welcome"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _connect(http, url, token)
        assert refused.value.status == 429
        async with http.get(
            url.replace("ws", "http", 1),
            headers={"Sec-WebSocket-Protocol": f"callbook.v1, bearer.{token}"},
        ) as response:
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            problem = await response.json(content_type="application/problem+json")
            assert problem["code"] == "rate_limited"
        # Another device is not held up.
        assert (await _connect(http, url, await bob.token()))["type"] == "welcome"


async def test_the_auth_message_path_is_throttled_too(make_server: MakeServer) -> None:
    server = await make_server(reconnect_burst=1, reconnect_every_s=EVERY_S)
    alice = await server.signup("alice")
    line = Line(alice)
    await line.open(in_header=False)
    await line.close()
    token = await alice.token()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(line.url, protocols=["callbook.v1"])
        await ws.send_json({"type": "auth", "token": token})
        error = await ws.receive_json()
        assert (error["type"], error["code"]) == ("error", "rate_limited")
        await ws.receive()
        assert ws.close_code == 1013
        await ws.close()


async def test_a_refused_device_is_not_signed_in_and_its_session_goes_on(
    make_server: MakeServer,
) -> None:
    server = await make_server(reconnect_burst=1, reconnect_every_s=EVERY_S)
    alice = await server.signup("alice")
    async with Line(alice) as line:
        await line.open()
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await _connect(http, line.url, await alice.token())
        # The refused attempt did not replace the open connection (4000).
        await line.send(m.Ping())
        await line.expect(m.Pong)


def test_the_bucket_per_device() -> None:
    now = [0.0]
    throttle = ReconnectThrottle(3, 2.0, clock=lambda: now[0])
    assert [throttle.try_connect("d1") for _ in range(3)] == [0, 0, 0]
    assert throttle.try_connect("d1") == 2
    assert throttle.try_connect("d2") == 0
    now[0] = 1.0
    assert throttle.try_connect("d1") == 1
    now[0] = 2.0
    assert throttle.try_connect("d1") == 0
    assert throttle.try_connect("d1") == 2


def test_full_buckets_are_forgotten() -> None:
    now = [0.0]
    throttle = ReconnectThrottle(2, 1.0, clock=lambda: now[0])
    for i in range(5000):
        throttle.try_connect(f"d{i}")
    assert len(throttle) == 5000
    now[0] = 10.0
    throttle.try_connect("late")
    assert len(throttle) == 1
