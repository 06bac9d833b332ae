"""Devices: Ed25519 public keys, challenge-response sign-in, the per-account device list."""

from __future__ import annotations

import base64
import binascii
import secrets

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from directory import labels
from directory.errors import (
    BadChallenge,
    BadSignature,
    InvalidKey,
    NotFound,
    TooManyDevices,
    UnknownDevice,
)
from directory.records import MAX_DEVICE_NAME, Device, StoredDevice
from directory.storage import keys
from directory.store import Store

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(StoredDevice).decode

_ADD_IF_ROOM = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# Rewrites a device record only while it exists, so a concurrent revoke is never undone.
_REPLACE_IF_PRESENT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
# y-coordinates of the points of order 1, 2, 4 and 8: keys any signature could match.
_SMALL_ORDER_Y = frozenset(
    {
        0,
        1,
        _P - 1,
        0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
        0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
    }
)


def _is_valid_point(raw: bytes) -> bool:
    """Whether 32 bytes decode to a curve point of large order (OpenSSL only checks at verify)."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _P or y in _SMALL_ORDER_Y:
        return False
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    return x2 != 0 and pow(x2, (_P - 1) // 2, _P) == 1


def new_id() -> str:
    return secrets.token_hex(16)


def parse_public_key(encoded: str) -> Ed25519PublicKey:
    """A raw 32-byte Ed25519 public key in base64url (padding optional)."""
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey("The public key is not valid base64url.") from exc
    if len(raw) != 32:
        raise InvalidKey(f"An Ed25519 public key has 32 bytes; this one has {len(raw)}.")
    if not _is_valid_point(raw):
        raise InvalidKey("The public key is not a point of large order on Ed25519.")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise InvalidKey("The public key is not a valid Ed25519 key.") from exc


def canonical_key(encoded: str) -> str:
    """The stored spelling of a key: unpadded base64url of the raw 32 bytes."""
    raw = parse_public_key(encoded).public_bytes_raw()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def check_name(name: str) -> str:
    checked = labels.check(name, MAX_DEVICE_NAME, "device name", required=True)
    assert checked is not None
    return checked


#: A media key as published: (X25519 public key, Ed25519 signature), both base64url, checked
#: by the caller (the server checks it at the REST edge, ``signaling.signatures``).
MediaKey = tuple[str, str]


def new_record(
    store: Store, name: str, public_key: str, media_key: MediaKey | None = None
) -> StoredDevice:
    """``media_key``: the device's own, its signature by ``public_key`` already checked
    (optional at enrollment)."""
    today = store.today()
    media, signature = media_key if media_key else (None, None)
    return StoredDevice(
        name=check_name(name),
        public_key=canonical_key(public_key),
        created_day=today,
        last_seen_day=today,
        media_key=media,
        media_key_signature=signature,
    )


def encode(record: StoredDevice) -> bytes:
    return _encode(record)


async def add(
    store: Store, account_id: str, name: str, public_key: str, media_key: MediaKey | None = None
) -> Device:
    record = new_record(store, name, public_key, media_key)
    device_id = new_id()
    added = await store.run_script(
        _ADD_IF_ROOM,
        [keys.devices(account_id), keys.account(account_id)],
        [store.config.max_devices, device_id, _encode(record)],
    )
    if added == 0:
        raise TooManyDevices(
            f"An account has at most {store.config.max_devices} devices; revoke one first."
        )
    if added == -1:
        raise NotFound("The account no longer exists.")
    return record.with_id(device_id)


async def list_all(store: Store, account_id: str) -> list[Device]:
    raw: dict[str, str] = await store.redis.hgetall(keys.devices(account_id))
    devices = [_decode(value).with_id(device_id) for device_id, value in raw.items()]
    return sorted(devices, key=lambda d: (d.created_day, d.id))


async def get(store: Store, account_id: str, device_id: str) -> Device:
    return (await _stored(store, account_id, device_id)).with_id(device_id)


async def is_active(store: Store, account_id: str, device_id: str) -> bool:
    """True while the device is enrolled; checked on every request so revocation is immediate."""
    return bool(await store.redis.hexists(keys.devices(account_id), device_id))


async def rename(store: Store, account_id: str, device_id: str, name: str) -> Device:
    stored = msgspec.structs.replace(
        await _stored(store, account_id, device_id), name=check_name(name)
    )
    if not await _replace(store, account_id, device_id, stored):
        raise NotFound("No such device on this account.")
    return stored.with_id(device_id)


async def publish_media_key(
    store: Store, account_id: str, device_id: str, media_key: MediaKey
) -> Device:
    """Set (or rotate) the device's media key, its signature already checked."""
    record = await _stored(store, account_id, device_id)
    media, signature = media_key
    stored = msgspec.structs.replace(record, media_key=media, media_key_signature=signature)
    if not await _replace(store, account_id, device_id, stored):
        raise NotFound("No such device on this account.")
    return stored.with_id(device_id)


async def _stored(store: Store, account_id: str, device_id: str) -> StoredDevice:
    value = await store.redis.hget(keys.devices(account_id), device_id)
    if value is None:
        raise NotFound("No such device on this account.")
    return _decode(value)


async def _replace(store: Store, account_id: str, device_id: str, record: StoredDevice) -> bool:
    replaced = await store.run_script(
        _REPLACE_IF_PRESENT, [keys.devices(account_id)], [device_id, _encode(record)]
    )
    return bool(replaced)


async def revoke(store: Store, account_id: str, device_id: str) -> None:
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.devices(account_id), device_id)
        pipe.hdel(keys.push_tokens(account_id), device_id)
        removed, _ = await pipe.execute()
    if not removed:
        raise NotFound("No such device on this account.")


async def issue_challenge(store: Store) -> str:
    nonce = secrets.token_urlsafe(32)
    await store.redis.set(keys.nonce(nonce), "1", ex=keys.NONCE_TTL_S)
    return nonce


async def verify_signin(
    store: Store, account_id: str, device_id: str, nonce: str, signature: str, message: bytes
) -> Device:
    """Spend ``nonce`` and check ``signature`` over ``message`` with the device's key.

    ``message`` is what the device signed, as the protocol defines it for this account, device
    and nonce (``signaling.protocol.signing.signin_message``): the address book checks keys, it
    does not define what clients sign."""
    # The nonce is spent first: a failed attempt cannot be retried with the same challenge.
    if len(nonce) > 128 or await store.redis.getdel(keys.nonce(nonce)) is None:
        raise BadChallenge("The challenge is unknown, expired or already used.")
    value = await store.redis.hget(keys.devices(account_id), device_id)
    if value is None:
        raise UnknownDevice("This device is not enrolled (revoked or never added).")
    record = _decode(value)
    try:
        sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        parse_public_key(record.public_key).verify(sig, message)
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise BadSignature("The signature does not verify with this device's key.") from exc
    today = store.today()
    if record.last_seen_day != today:
        record = msgspec.structs.replace(record, last_seen_day=today)
        if not await _replace(store, account_id, device_id, record):
            raise UnknownDevice("This device was revoked during sign-in.")
    return record.with_id(device_id)
