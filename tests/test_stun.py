"""The built-in STUN server: binding requests answered with the asker's address, nothing else
answered, and its URI handed out by ``GET /v1/turn`` when the deployment has no TURN."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from aioice import stun as aioice_stun
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.config import from_env
from signaling.protocol.bodies import IceServers
from signaling.stun import STUN_PORT, answer, uri
from tests.conftest import MakeServer

MAX_EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))


def _request(attributes: bytes = b"") -> bytes:
    header = bytes(
        aioice_stun.Message(
            aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST, transaction_id=b"callbook-tst"
        )
    )
    return header[:2] + len(attributes).to_bytes(2, "big") + header[4:] + attributes


@pytest.mark.parametrize(
    "source",
    [("198.18.0.2", 61000), ("203.0.113.9", 1), ("2001:db8::7", 3478), ("::ffff:192.0.2.1", 5)],
)
def test_a_binding_request_gets_the_source_address_back(source: tuple[str, int]) -> None:
    reply = answer(_request(), source)
    assert reply is not None
    # aioice's own parser checks the fingerprint and decodes the XOR'd address.
    message = aioice_stun.parse_message(reply)
    assert (message.message_method, message.message_class) == (
        aioice_stun.Method.BINDING,
        aioice_stun.Class.RESPONSE,
    )
    assert message.transaction_id == b"callbook-tst"
    expected = source[0].removeprefix("::ffff:")
    assert message.attributes["XOR-MAPPED-ADDRESS"] == (expected, source[1])
    assert "FINGERPRINT" in message.attributes


def test_a_request_with_attributes_is_answered() -> None:
    software = b"\x80\x22\x00\x04test"  # SOFTWARE "test"
    assert answer(_request(attributes=software), ("198.18.0.2", 9)) is not None


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00\x01\x00\x00",  # shorter than a header
        bytes.fromhex("0101000021124442") + b"callbook-tst",  # a response
        bytes.fromhex("0011000021124442") + b"callbook-tst",  # an indication
        bytes.fromhex("0003000021124442") + b"callbook-tst",  # an Allocate (TURN)
        bytes.fromhex("0001000011111111") + b"callbook-tst",  # RFC 3489 (no magic cookie)
        bytes.fromhex("0001000821124442") + b"callbook-tst",  # claims a body it does not have
        bytes.fromhex("0001000221124442") + b"callbook-tst\x00\x00",  # not 32-bit aligned
        b"\x16\x03\x01" + bytes(40),  # a TLS record
    ],
)
def test_anything_else_gets_no_answer(datagram: bytes) -> None:
    assert answer(datagram, ("198.18.0.2", 9)) is None


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(["198.18.0.2", "2001:db8::1"]))
def test_hostile_datagrams_never_raise_and_never_get_more_than_a_small_answer(
    datagram: bytes, address: str
) -> None:
    reply = answer(datagram, (address, 9))
    assert reply is None or len(reply) <= 52


@pytest.mark.parametrize(
    ("advertised", "request_host", "expected"),
    [
        (None, "callbook.example.org", "stun:callbook.example.org:3478"),
        (None, "callbook.example.org:8080", "stun:callbook.example.org:3478"),
        (None, "198.18.0.2:8080", "stun:198.18.0.2:3478"),
        (None, "[2001:db8::1]:8080", "stun:[2001:db8::1]:3478"),
        (None, "[2001:db8::1]", "stun:[2001:db8::1]:3478"),
        ("203.0.113.9", "10.0.0.5:8080", "stun:203.0.113.9:3478"),
        ("2001:db8::9", "10.0.0.5:8080", "stun:[2001:db8::9]:3478"),
    ],
)
def test_the_uri_names_the_host_devices_reach(
    advertised: str | None, request_host: str, expected: str
) -> None:
    assert uri(advertised, request_host, 3478) == expected


def test_serve_runs_stun_on_3478_unless_turned_off() -> None:
    assert (from_env({}).stun_port, from_env({}).stun_host) == (3478, None)
    assert from_env({"CALLBOOK_STUN_PORT": "0"}).stun_port is None
    config = from_env({"CALLBOOK_STUN_PORT": "3479", "CALLBOOK_STUN_HOST": "203.0.113.9"})
    assert (config.stun_port, config.stun_host) == (3479, "203.0.113.9")


async def _binding(port: int) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        await loop.sock_sendto(sock, _request(), ("127.0.0.1", port))
        reply = await asyncio.wait_for(loop.sock_recv(sock, 512), 10)
        address: tuple[str, int] = aioice_stun.parse_message(reply).attributes["XOR-MAPPED-ADDRESS"]
        assert address == sock.getsockname()
        return address


async def test_without_turn_devices_get_the_servers_own_stun(make_server: MakeServer) -> None:
    server = await make_server(stun_port=0)
    alice = await server.signup("alice")
    turn = await alice.request("GET", "/v1/turn", IceServers)
    [own] = turn.ice_servers
    assert (own.username, own.credential, turn.ttl) == (None, None, 3600)
    [url] = own.urls
    assert url.startswith("stun:127.0.0.1:")
    await _binding(int(url.rsplit(":", 1)[1]))  # and it answers


async def test_with_turn_devices_get_turn_and_without_stun_nothing(
    make_server: MakeServer,
) -> None:
    with_turn = await make_server(stun_port=0, turn_uris=("turn:127.0.0.1:3478",), turn_secret="s")
    turn = await (await with_turn.signup("alice")).request("GET", "/v1/turn", IceServers)
    assert [s.urls for s in turn.ice_servers] == [["turn:127.0.0.1:3478"]]
    assert STUN_PORT not in with_turn.app  # coturn answers STUN there
    bare = await make_server()
    turn = await (await bare.signup("bob")).request("GET", "/v1/turn", IceServers)
    assert (turn.ice_servers, turn.ttl) == ([], 0)


async def test_an_advertised_host_is_what_devices_get(make_server: MakeServer) -> None:
    server = await make_server(stun_port=0, stun_host="203.0.113.9")
    turn = await (await server.signup("alice")).request("GET", "/v1/turn", IceServers)
    assert turn.ice_servers[0].urls[0].startswith("stun:203.0.113.9:")
