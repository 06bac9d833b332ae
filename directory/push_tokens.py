"""Push registrations: how to wake a device that is offline when a call comes in."""

from __future__ import annotations

import msgspec

from directory import keys
from directory.errors import NotFound
from directory.records import PushProvider, PushRegistration
from directory.store import Store


class _Stored(msgspec.Struct, frozen=True, array_like=True):
    provider: PushProvider
    token: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Stored).decode

# A registration only for a device that is still enrolled.
_REGISTER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


async def register(
    store: Store, account_id: str, device_id: str, provider: PushProvider, token: str
) -> PushRegistration:
    done = await store.run_script(
        _REGISTER,
        [keys.devices(account_id), keys.push_tokens(account_id)],
        [device_id, _encode(_Stored(provider, token))],
    )
    if not done:
        raise NotFound("No such device on this account.")
    return PushRegistration(device_id=device_id, provider=provider, token=token)


async def unregister(store: Store, account_id: str, device_id: str) -> None:
    if not await store.redis.hdel(keys.push_tokens(account_id), device_id):
        raise NotFound("This device has no push registration.")


async def list_all(store: Store, account_id: str) -> list[PushRegistration]:
    raw: dict[str, str] = await store.redis.hgetall(keys.push_tokens(account_id))
    registrations = []
    for device_id, value in sorted(raw.items()):
        stored = _decode(value)
        registrations.append(
            PushRegistration(device_id=device_id, provider=stored.provider, token=stored.token)
        )
    return registrations
