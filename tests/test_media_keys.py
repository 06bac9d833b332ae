"""Device media keys over REST (protocol 3.7): published at sign-up, enrolment and recovery or
with the PUT, checked against the device key, rotated, kept by rename, exported, and published
by the client for profiles from before media keys."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from directory.storage import keys
from directory.store import Store
from signaling.protocol.bodies import DeviceEnrollment, DeviceRename, MediaKeyPublish, SignupRequest
from signaling.protocol.records import Device
from signaling.sdk.client import (
    Client,
    ClientError,
    Profile,
    _b64,
    _b64decode,
    enrollment,
    new_device_key,
    new_media_key,
)
from tests.conftest import Server

#: X25519 points of small order (RFC 7748 section 6.1 warns of them): u = 0 and u = 1.
SMALL_ORDER = [bytes(32), (1).to_bytes(32, "little")]


def _signed(device_key: Ed25519PrivateKey, raw: bytes) -> MediaKeyPublish:
    signature = device_key.sign(b"callbook media key v1\x00" + raw)
    return MediaKeyPublish(media_key=_b64(raw), media_key_signature=_b64(signature))


async def _put(client: Client, device_id: str, body: MediaKeyPublish) -> Device:
    device: Device = await client.request("PUT", f"/v1/devices/{device_id}/media-key", Device, body)
    return device


async def _refused(coroutine: object, status: int, code: str) -> None:
    with pytest.raises(ClientError) as refused:
        await coroutine  # type: ignore[misc]
    assert (refused.value.status, refused.value.code) == (status, code)


def _own(client: Client) -> Profile:
    assert client.profile is not None
    return client.profile


async def test_sign_up_publishes_the_media_key_and_the_list_and_export_show_it(
    server: Server,
) -> None:
    alice = await server.signup("alice")
    profile = _own(alice)
    media = profile.media_key()
    assert media is not None
    [device] = await alice.devices()
    assert device.media_key == _b64(media.public_key().public_bytes_raw())
    assert device.media_key_signature is not None
    profile.key().public_key().verify(  # raises if it does not verify
        _b64decode(device.media_key_signature),
        b"callbook media key v1\x00" + _b64decode(device.media_key),
    )
    exported = await alice.export()
    assert [d.media_key for d in exported.devices] == [device.media_key]


async def test_a_bad_media_key_at_sign_up_is_refused(server: Server) -> None:
    key, public = new_device_key()
    other = Ed25519PrivateKey.generate()
    _media, signed_by_other = new_media_key(other)
    bodies = {
        "wrong signer": DeviceEnrollment(
            name="phone", public_key=public, media_key=signed_by_other.media_key,
            media_key_signature=signed_by_other.media_key_signature,
        ),
        "key alone": DeviceEnrollment(
            name="phone", public_key=public, media_key=signed_by_other.media_key
        ),
        "small order": DeviceEnrollment(
            name="phone", public_key=public, media_key=_b64(SMALL_ORDER[0]),
            media_key_signature=_signed(key, SMALL_ORDER[0]).media_key_signature,
        ),
    }  # fmt: skip
    client = server.client()
    for handle, device in zip(("anna", "berta", "clara"), bodies.values(), strict=True):
        body = SignupRequest(handle=handle, device=device)
        await _refused(
            client.request("POST", "/v1/accounts", None, body, auth=False),
            422,
            "invalid_media_key",
        )


async def test_put_publishes_rotates_and_refuses_a_bad_signature(server: Server) -> None:
    alice = await server.signup("alice")
    profile = _own(alice)
    first = new_media_key(profile.key())[1]
    assert (await _put(alice, profile.device_id, first)).media_key == first.media_key
    rotated = new_media_key(profile.key())[1]
    device = await _put(alice, profile.device_id, rotated)
    assert (device.media_key, device.media_key_signature) == (
        rotated.media_key,
        rotated.media_key_signature,
    )
    [listed] = await alice.devices()
    assert listed.media_key == rotated.media_key

    forged = new_media_key(Ed25519PrivateKey.generate())[1]
    await _refused(_put(alice, profile.device_id, forged), 422, "invalid_media_key")
    for raw in SMALL_ORDER:
        await _refused(
            _put(alice, profile.device_id, _signed(profile.key(), raw)), 422, "invalid_media_key"
        )
    # Another key under the first one's signature (changing the last base64 character is not
    # enough: it carries 4 bits, and 1 in 16 keys already ends in the character put there).
    raw = bytearray(_b64decode(rotated.media_key))
    raw[0] ^= 0x01
    altered = MediaKeyPublish(
        media_key=_b64(bytes(raw)), media_key_signature=rotated.media_key_signature
    )
    await _refused(_put(alice, profile.device_id, altered), 422, "invalid_media_key")
    [unchanged] = await alice.devices()
    assert unchanged.media_key == rotated.media_key  # a refusal loses nothing


async def test_only_the_device_itself_publishes_its_media_key(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    laptop_key, media, body = enrollment("laptop")
    laptop: Device = await alice.request("POST", "/v1/devices", Device, body)
    assert laptop.media_key == _b64(media.public_key().public_bytes_raw())
    signed = new_media_key(laptop_key)[1]
    # Another device of the account, even with the laptop's own signature: refused.
    await _refused(_put(alice, laptop.id, signed), 403, "not_this_device")
    # Someone else's device looks like no device at all.
    await _refused(_put(bob, laptop.id, signed), 404, "not_found")
    [still] = [d for d in await alice.devices() if d.id == laptop.id]
    assert still.media_key == laptop.media_key


async def test_enrolment_needs_the_new_devices_own_signature(server: Server) -> None:
    alice = await server.signup("alice")
    _key, public = new_device_key()
    signed_by_alice = new_media_key(_own(alice).key())[1]
    body = DeviceEnrollment(
        name="laptop", public_key=public, media_key=signed_by_alice.media_key,
        media_key_signature=signed_by_alice.media_key_signature,
    )  # fmt: skip
    await _refused(alice.request("POST", "/v1/devices", Device, body), 422, "invalid_media_key")
    assert len(await alice.devices()) == 1


async def test_rename_keeps_the_media_key(server: Server) -> None:
    alice = await server.signup("alice")
    profile = _own(alice)
    renamed: Device = await alice.request(
        "PATCH", f"/v1/devices/{profile.device_id}", Device, DeviceRename(name="old phone")
    )
    assert renamed.name == "old phone" and renamed.media_key is not None


async def test_a_device_record_from_before_media_keys_reads_as_having_none(
    server: Server, store: Store
) -> None:
    alice = await server.signup("alice")
    profile = _own(alice)
    hash_key = keys.devices(profile.account_id)
    record = json.loads(await store.redis.hget(hash_key, profile.device_id))
    await store.redis.hset(hash_key, profile.device_id, json.dumps(record[:4]))
    [device] = await alice.devices()
    assert (device.media_key, device.media_key_signature) == (None, None)


async def test_signing_in_with_an_old_profile_publishes_a_media_key(server: Server) -> None:
    alice = await server.signup("alice")
    old = msgspec.structs.replace(_own(alice), media_private_key=None)
    kept: list[Profile] = []
    again = Client(server.url, old, on_profile_change=kept.append)
    try:
        await again.sign_in()
        [device] = await again.devices()
    finally:
        await again.close()
    assert kept == [old] and old.media_private_key is not None
    media = old.media_key()
    assert media is not None
    assert device.media_key == _b64(media.public_key().public_bytes_raw())


async def test_the_cli_keeps_a_media_key_it_publishes(server: Server, tmp_path: Path) -> None:
    """An identity file from before media keys gets one at its next sign-in, written back."""
    from signaling.sdk.cli import _client

    alice = await server.signup("alice")
    path = tmp_path / "alice.json"
    msgspec.structs.replace(_own(alice), media_private_key=None).save(path)
    args = type("Args", (), {"profile": path, "server": server.url, "timeout": 30.0})()
    async with _client(args) as client:  # type: ignore[arg-type]
        await client.me()
    written = Profile.load(path)
    assert written.media_private_key is not None
    [device] = await alice.devices()
    media = written.media_key()
    assert media is not None
    assert device.media_key == _b64(media.public_key().public_bytes_raw())
