"""Push registrations: how to wake a device that is offline when a call comes in."""

from __future__ import annotations

import msgspec

from directory.errors import NotFound
from directory.records import PushDelivery, PushProvider, PushRegistration
from directory.storage import keys
from directory.store import Store


class _Stored(msgspec.Struct, frozen=True, array_like=True):
    provider: PushProvider
    token: str
    # Registrations stored before direct delivery existed are two-element arrays: relayed.
    delivery: PushDelivery = "relay"


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Stored).decode

# A registration only for a device that is still enrolled.
_REGISTER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Only the token the provider refused: the device may have registered a new one meanwhile.
_FORGET = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return 0 end
if cjson.decode(stored)[2] ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


async def register(
    store: Store,
    account_id: str,
    device_id: str,
    provider: PushProvider,
    token: str,
    delivery: PushDelivery = "relay",
) -> PushRegistration:
    done = await store.run_script(
        _REGISTER,
        [keys.devices(account_id), keys.push_tokens(account_id)],
        [device_id, _encode(_Stored(provider, token, delivery))],
    )
    if not done:
        raise NotFound("No such device on this account.")
    return PushRegistration(device_id=device_id, provider=provider, token=token, delivery=delivery)


async def unregister(store: Store, account_id: str, device_id: str) -> None:
    if not await store.redis.hdel(keys.push_tokens(account_id), device_id):
        raise NotFound("This device has no push registration.")


async def forget(store: Store, account_id: str, device_id: str, token: str) -> bool:
    """Remove a registration whose token the push provider says is gone; ``False`` when the
    device has since registered another token (or none)."""
    removed = await store.run_script(_FORGET, [keys.push_tokens(account_id)], [device_id, token])
    return bool(removed)


async def list_all(store: Store, account_id: str) -> list[PushRegistration]:
    raw: dict[str, str] = await store.redis.hgetall(keys.push_tokens(account_id))
    registrations = []
    for device_id, value in sorted(raw.items()):
        stored = _decode(value)
        registrations.append(
            PushRegistration(
                device_id=device_id,
                provider=stored.provider,
                token=stored.token,
                delivery=stored.delivery,
            )
        )
    return registrations
