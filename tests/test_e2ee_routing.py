"""End-to-end media keys over the real WebSocket (protocol 11.16): participants carry their
devices' keys, ``media_keys`` blobs reach exactly the named participants unchanged,
``media_key_request`` is rate-limited, a relayed 1:1 call through the SFU introduces both
devices, a device without a media key cannot join, and a participant on another node is
reached like any other."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from directory.storage import keys
from directory.store import Store
from signaling.calls import media_keys
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.client import Client, _b64decode, new_media_key
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server, befriend
from tests.test_calls import _line, _quiet, _ring
from tests.test_group_protocol import _start

BLOB = "A" * 171  # 128 bytes of base64url: the size of a real key blob (docs/e2ee.md)
NOBODY = "f" * 16


@dataclass
class Group:
    call_id: str
    lines: dict[str, Line]
    ids: dict[str, str]  # handle -> participant id
    roster: m.Participants


@contextlib.asynccontextmanager
async def _group(server: Server, *handles: str) -> AsyncIterator[Group]:
    """A group call hosted by the first handle that every other one has joined."""
    clients = {handle: await server.signup(handle) for handle in handles}
    async with contextlib.AsyncExitStack() as stack:
        lines = {h: await stack.enter_async_context(await _line(c)) for h, c in clients.items()}
        host, *guests = handles
        joined = await _start(lines[host], *guests)
        ids = {host: joined.participant}
        roster = None
        for count, guest in enumerate(guests, start=2):
            await lines[guest].expect(m.Incoming)
            await lines[guest].send(m.Accept(call_id=joined.call_id))
            ids[guest] = (await lines[guest].expect(m.Joined)).participant
            for handle in ids:
                roster = await lines[handle].expect(m.Participants)
                assert len(roster.participants) == count
        assert roster is not None
        yield Group(joined.call_id, lines, ids, roster)


def _keys(call_id: str, kid: int, *entries: tuple[str, str]) -> m.MediaKeys:
    return m.MediaKeys(
        call_id=call_id,
        kid=kid,
        keys=[m.MediaKeyFor(participant=p, blob=blob) for p, blob in entries],
    )


async def test_participants_carry_each_devices_signed_keys(server: Server) -> None:
    async with _group(server, "alice", "bob", "carol") as group:
        for entry in group.roster.participants:
            assert entry.device_key and entry.media_key and entry.media_key_signature
            signer = Ed25519PublicKey.from_public_bytes(_b64decode(entry.device_key))
            signer.verify(  # raises unless the signature holds
                _b64decode(entry.media_key_signature),
                b"callbook media key v1\x00" + _b64decode(entry.media_key),
            )
        assert len({p.media_key for p in group.roster.participants}) == 3


async def test_a_blob_reaches_exactly_the_named_participants_unchanged(server: Server) -> None:
    async with _group(server, "alice", "bob", "carol") as group:
        a, b, c = (group.lines[h] for h in ("alice", "bob", "carol"))
        ids = group.ids
        for_bob, for_carol = "b" * 171, "c-_9" * 64
        await a.send(
            _keys(group.call_id, 2**53 - 1, (ids["bob"], for_bob), (ids["carol"], for_carol))
        )
        got_b, got_c = await b.expect(m.MediaKey), await c.expect(m.MediaKey)
        assert got_b == m.MediaKey(
            call_id=group.call_id, participant=ids["alice"], kid=2**53 - 1, blob=for_bob
        )
        assert (got_c.participant, got_c.blob) == (ids["alice"], for_carol)

        await b.send(_keys(group.call_id, 0, (ids["carol"], BLOB)))
        assert (await c.expect(m.MediaKey)).participant == ids["bob"]
        await _quiet(a)  # nothing back to the sender, nothing to whoever is not named
        await _quiet(b)


async def test_unknown_gone_and_own_recipients_are_skipped(server: Server) -> None:
    async with _group(server, "alice", "bob", "carol") as group:
        a, b, c = (group.lines[h] for h in ("alice", "bob", "carol"))
        ids = group.ids
        await c.send(m.Hangup(call_id=group.call_id))
        assert (await c.expect(m.Ended)).reason == "hangup"
        for line in (a, b):
            await line.expect(m.Participants)
        await a.send(
            _keys(
                group.call_id, 1, (ids["carol"], BLOB), (NOBODY, BLOB), (ids["alice"], BLOB),
                (ids["bob"], BLOB),
            )
        )  # fmt: skip
        assert (await b.expect(m.MediaKey)).participant == ids["alice"]
        await _quiet(a)
        await _quiet(c)


async def test_non_participants_get_typed_errors(server: Server) -> None:
    dave = await server.signup("dave")
    async with _group(server, "alice", "bob") as group, await _line(dave) as d:
        ids = group.ids
        await d.send(_keys(group.call_id, 0, (ids["alice"], BLOB)))
        assert (await d.expect(m.Error)).code == "unknown_call"
        await d.send(m.MediaKeyRequest(call_id=group.call_id, participant=ids["alice"]))
        assert (await d.expect(m.Error)).code == "unknown_call"
        await _quiet(group.lines["alice"])


async def test_a_ringing_invitee_and_a_peer_to_peer_call_are_refused(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    carol = await server.signup("carol")
    await befriend(alice, carol)  # their 1:1 calls stay peer to peer
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        joined = await _start(a, "bob")
        await b.expect(m.Incoming)
        await b.send(_keys(joined.call_id, 0, (joined.participant, BLOB)))
        error = await b.expect(m.Error)
        assert (error.code, error.call_id) == ("not_in_call", joined.call_id)

        call_id = await _ring(c, a, handle="alice")
        await a.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).sfu is False
        await c.expect(m.Accepted)
        await c.send(m.MediaKeyRequest(call_id=call_id, participant=NOBODY))
        assert (await c.expect(m.Error)).code == "unexpected_message"


@pytest.mark.parametrize(
    "change",
    [
        {"kid": -1},
        {"kid": 2**53},
        {"keys": []},
        {"keys": [{"participant": "0" * 16, "blob": BLOB}] * 16},
        {"keys": [{"participant": "0" * 16, "blob": "A" * 257}]},
        {"keys": [{"participant": "0" * 16, "blob": "AAA="}]},
        {"keys": [{"participant": "0" * 16, "blob": "A+/A"}]},
        {"keys": [{"participant": "0" * 16, "blob": ""}]},
        {"keys": [{"participant": "NOT-HEX", "blob": BLOB}]},
        {"keys": [{"participant": "0" * 16, "blob": BLOB, "extra": 1}]},
        {"extra": True},
        {"kid": "1"},
    ],
    ids=[
        "negative-kid", "kid-too-big", "no-keys", "16-keys", "blob-too-long", "padded-blob",
        "non-url-alphabet", "empty-blob", "bad-participant", "unknown-entry-field",
        "unknown-field", "kid-as-string",
    ],
)  # fmt: skip
async def test_malformed_key_messages_are_refused_and_deliver_nothing(
    server: Server, change: dict[str, object]
) -> None:
    async with _group(server, "alice", "bob") as group:
        a, b = group.lines["alice"], group.lines["bob"]
        frame = {
            "type": "media_keys",
            "call_id": group.call_id,
            "kid": 0,
            "keys": [{"participant": group.ids["bob"], "blob": BLOB}],
        }
        await a.send_raw(json.dumps({**frame, **change}))
        assert (await a.expect(m.Error)).code == "invalid_message"
        await _quiet(b)


async def test_naming_a_participant_twice_is_refused(server: Server) -> None:
    async with _group(server, "alice", "bob") as group:
        a, b = group.lines["alice"], group.lines["bob"]
        bob = group.ids["bob"]
        await a.send(_keys(group.call_id, 0, (bob, BLOB), (bob, "B" * 171)))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("invalid_message", group.call_id)
        await _quiet(b)


async def test_key_requests_pass_once_per_interval_for_each_asker_and_asked(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long interval, so that a busy machine cannot make two requests look a second apart.
    monkeypatch.setattr(media_keys, "REQUEST_INTERVAL_S", 3600.0)
    async with _group(server, "alice", "bob", "carol") as group:
        a, b, c = (group.lines[h] for h in ("alice", "bob", "carol"))
        ids = group.ids
        for _ in range(3):
            await b.send(m.MediaKeyRequest(call_id=group.call_id, participant=ids["alice"]))
        await b.send(m.MediaKeyRequest(call_id=group.call_id, participant=ids["carol"]))
        await b.send(m.MediaKeyRequest(call_id=group.call_id, participant=NOBODY))
        await c.send(m.MediaKeyRequest(call_id=group.call_id, participant=ids["alice"]))
        # Markers: each connection's messages are handled in order, so a repeat that passed
        # would reach alice before its sender's marker.
        await b.send(_keys(group.call_id, 5, (ids["alice"], BLOB)))
        await c.send(_keys(group.call_id, 6, (ids["alice"], BLOB)))

        heard = [await a.receive(within=10) for _ in range(4)]
        requests = [
            (type(x).__name__, x.participant) for x in heard if isinstance(x, m.PeerMediaKeyRequest)
        ]
        assert sorted(requests) == sorted(
            [("PeerMediaKeyRequest", ids["bob"]), ("PeerMediaKeyRequest", ids["carol"])]
        )
        assert sorted(x.kid for x in heard if isinstance(x, m.MediaKey)) == [5, 6]
        await _quiet(a)  # the repeats were dropped
        asked = m.PeerMediaKeyRequest(call_id=group.call_id, participant=ids["bob"])
        assert await c.expect(m.PeerMediaKeyRequest) == asked
        await _quiet(b)  # dropped silently: no error


async def test_a_relayed_call_through_the_sfu_introduces_both_devices(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)  # strangers: relayed, through the SFU without TURN
        await b.send(m.Accept(call_id=call_id))
        mine = {}
        for side in (a, b):
            accepted = await side.expect(m.Accepted)
            assert accepted.sfu and accepted.participant and accepted.participants
            mine[side] = accepted
        assert mine[a].participants == mine[b].participants
        entries = {p.person.handle: p for p in mine[a].participants or []}
        assert [p.person.handle for p in mine[a].participants or []] == ["alice", "bob"]
        assert entries["alice"].participant == mine[a].participant
        assert entries["bob"].participant == mine[b].participant
        for client, handle in ((alice, "alice"), (bob, "bob")):
            [device] = await client.devices()
            entry = entries[handle]
            assert (entry.device_key, entry.media_key, entry.media_key_signature) == (
                device.public_key, device.media_key, device.media_key_signature
            )  # fmt: skip

        await a.send(_keys(call_id, 0, (entries["bob"].participant, BLOB)))
        got = await b.expect(m.MediaKey)
        assert (got.participant, got.blob) == (entries["alice"].participant, BLOB)
        await b.send(m.MediaKeyRequest(call_id=call_id, participant=entries["alice"].participant))
        assert (await a.expect(m.PeerMediaKeyRequest)).participant == entries["bob"].participant


async def _drop_media_key(store: Store, client: Client) -> None:
    """The device's record as written before media keys: no media key (the client is signed
    in already, so it does not publish one again)."""
    await client.sign_in()
    assert client.profile is not None
    hash_key = keys.devices(client.profile.account_id)
    record = json.loads(await store.redis.hget(hash_key, client.profile.device_id))
    await store.redis.hset(hash_key, client.profile.device_id, json.dumps(record[:4]))


async def _publish_media_key(client: Client) -> None:
    assert client.profile is not None
    signed = new_media_key(client.profile.key())[1]
    await client.request("PUT", f"/v1/devices/{client.profile.device_id}/media-key", None, signed)


async def test_a_group_call_needs_a_media_key(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    eve = await server.signup("eve")
    for client in (alice, bob, eve):
        await _drop_media_key(store, client)
    async with await _line(alice) as a, await _line(bob) as b:
        await a.send(m.GroupInvite(handles=["bob"], ref="g1"))
        refused = await a.expect(m.Error)
        assert (refused.code, refused.ref) == ("media_key_required", "g1")
        await _quiet(b)  # nothing rang

        await _publish_media_key(alice)
        joined = await _start(a, "bob")
        # Someone who may not join hears nothing about keys: the call does not exist for it.
        async with await _line(eve) as e:
            await e.send(m.Accept(call_id=joined.call_id))
            assert (await e.expect(m.Error)).code == "unknown_call"
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=joined.call_id))
        refused = await b.expect(m.Error)
        assert (refused.code, refused.call_id) == ("media_key_required", joined.call_id)
        await _quiet(a)  # bob still rings; nobody joined

        await _publish_media_key(bob)
        await b.send(m.Accept(call_id=joined.call_id))
        assert (await b.expect(m.Joined)).call_id == joined.call_id


async def test_a_call_through_the_sfu_needs_a_media_key(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await _drop_media_key(store, bob)
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)
        await b.send(m.Accept(call_id=call_id))
        refused = await b.expect(m.Error)
        assert (refused.code, refused.call_id) == ("media_key_required", call_id)
        await _quiet(a)  # still ringing

        await _publish_media_key(bob)
        await _drop_media_key(store, alice)
        await b.send(m.Accept(call_id=call_id))
        accepted = await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        assert [p.media_key is None for p in accepted.participants or []] == [True, False]
        await a.send(m.Publish(call_id=call_id, sdp="v=0\r\n"))
        refused = await a.expect(m.Error)
        assert (refused.code, refused.call_id) == ("media_key_required", call_id)


async def test_keys_reach_a_participant_on_another_node(make_server: MakeServer) -> None:
    node_a = await make_server(routing="redis", node_id="node-a")
    node_b = await make_server(routing="redis", node_id="node-b")
    alice = await node_a.signup("alice")
    bob_there = await node_a.signup("bob")
    bob = node_b.client()
    bob.profile = bob_there.profile
    async with await _line(alice) as a, await _line(bob) as b:
        joined = await _start(a, "bob")
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=joined.call_id))
        bob_id = (await b.expect(m.Joined)).participant
        roster = await b.expect(m.Participants)
        assert all(p.media_key for p in roster.participants)
        await a.expect(m.Participants)

        await a.send(_keys(joined.call_id, 7, (bob_id, BLOB)))
        got = await b.expect(m.MediaKey)
        assert (got.participant, got.kid, got.blob) == (joined.participant, 7, BLOB)
        await b.send(_keys(joined.call_id, 1, (joined.participant, "x" * 171)))
        back = await a.expect(m.MediaKey)
        assert (back.participant, back.blob) == (bob_id, "x" * 171)
        await b.send(m.MediaKeyRequest(call_id=joined.call_id, participant=joined.participant))
        assert (await a.expect(m.PeerMediaKeyRequest)).participant == bob_id


@pytest.mark.parametrize(
    ("asks", "passed"),
    [
        ([("b", "a", 0.0), ("b", "a", 0.5), ("b", "a", 0.999)], [True, False, False]),
        ([("b", "a", 0.0), ("b", "a", 1.0), ("b", "a", 1.5)], [True, True, False]),
        ([("b", "a", 0.0), ("b", "c", 0.0), ("c", "a", 0.0)], [True, True, True]),
        ([("b", "a", 5.0), ("b", "a", 4.0)], [True, False]),  # a clock step back is no reset
    ],
)
def test_the_request_limiter(asks: list[tuple[str, str, float]], passed: list[bool]) -> None:
    limiter = media_keys.RequestLimiter()
    assert [limiter.allow("call", asker, asked, at) for asker, asked, at in asks] == passed
    limiter.forget("call")
    assert limiter.allow("call", *asks[-1][:2], asks[-1][2])


async def test_a_caller_who_always_relays_needs_a_media_key_before_ringing(
    server: Server, store: Store
) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await alice.update(AccountUpdate(relay_calls="always"))
    await _drop_media_key(store, alice)
    async with await _line(alice) as a, await _line(bob) as b:
        await a.send(m.Invite(handle="bob", ref="r1"))
        refused = await a.expect(m.Error)
        assert (refused.code, refused.ref) == ("media_key_required", "r1")
        await _quiet(b)


async def test_a_relayed_call_across_nodes_introduces_both_devices(
    make_server: MakeServer,
) -> None:
    node_a = await make_server(routing="redis", node_id="node-a")
    node_b = await make_server(routing="redis", node_id="node-b")
    alice = await node_a.signup("alice")
    bob_there = await node_a.signup("bob")
    bob = node_b.client()
    bob.profile = bob_there.profile
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)  # strangers: through the SFU
        await b.send(m.Accept(call_id=call_id))
        accepted = {side: await side.expect(m.Accepted) for side in (a, b)}
        assert accepted[a].participants == accepted[b].participants
        assert all(p.media_key for p in accepted[b].participants or [])
        bob_id, alice_id = accepted[b].participant, accepted[a].participant
        assert bob_id and alice_id
        await a.send(_keys(call_id, 0, (bob_id, BLOB)))
        assert (await b.expect(m.MediaKey)).participant == alice_id
        await b.send(_keys(call_id, 0, (alice_id, BLOB)))
        assert (await a.expect(m.MediaKey)).participant == bob_id
