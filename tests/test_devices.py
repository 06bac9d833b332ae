"""Devices: the ten-device cap, rename, revoke, and recovery with the one-time code."""

from __future__ import annotations

import pytest

from signaling.appkeys import GATE
from signaling.protocol.bodies import (
    DeviceEnrollment,
    DeviceRename,
    Enrollment,
    Puzzle,
    PuzzleRequest,
    RecoveryRequest,
)
from signaling.protocol.records import Device
from signaling.sdk.client import Client, ClientError, _b64, new_device_key
from tests.conftest import Server


async def _enroll(client: Client, name: str) -> Device:
    _key, public = new_device_key()
    device: Device = await client.request(
        "POST", "/v1/devices", Device, DeviceEnrollment(name=name, public_key=public)
    )
    return device


async def test_an_account_holds_at_most_ten_devices(server: Server) -> None:
    alice = await server.signup("alice")
    for i in range(9):
        await _enroll(alice, f"device {i}")
    assert len(await alice.devices()) == 10
    with pytest.raises(ClientError) as full:
        await _enroll(alice, "one too many")
    assert (full.value.status, full.value.code) == (409, "too_many_devices")


async def test_rename_and_revoke(server: Server) -> None:
    alice = await server.signup("alice")
    tablet = await _enroll(alice, "tablet")
    renamed: Device = await alice.request(
        "PATCH", f"/v1/devices/{tablet.id}", Device, DeviceRename(name="kitchen tablet")
    )
    assert renamed.name == "kitchen tablet" and renamed.public_key == tablet.public_key
    await alice.request("DELETE", f"/v1/devices/{tablet.id}")
    assert [d.id for d in await alice.devices()] == [alice.profile.device_id]  # type: ignore[union-attr]
    with pytest.raises(ClientError) as gone:
        await alice.request("DELETE", f"/v1/devices/{tablet.id}")
    assert (gone.value.status, gone.value.code) == (404, "not_found")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x01" + b"\x00" * 31,  # the identity: every signature would verify
        (2).to_bytes(32, "little"),  # not on the curve
        bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    ],
    ids=["identity", "off-curve", "order-8"],
)
async def test_device_key_must_be_a_real_ed25519_key(server: Server, raw: bytes) -> None:
    alice = await server.signup("alice")
    with pytest.raises(ClientError) as bad:
        await alice.request(
            "POST", "/v1/devices", Device, DeviceEnrollment(name="x", public_key=_b64(raw))
        )
    assert (bad.value.status, bad.value.code) == (422, "invalid_public_key")


async def _recover(
    server: Server, handle: str, code: str, *, revoke_others: bool = False
) -> tuple[Client, str]:
    client = server.client()
    done, _profile = await client.recover(handle, code, revoke_others=revoke_others)
    return client, done.recovery_code


async def test_recovery_code_enrolls_a_new_device_once(server: Server) -> None:
    alice = await server.signup("alice")
    assert alice.profile is not None and alice.profile.recovery_code
    first_code = alice.profile.recovery_code

    recovered, second_code = await _recover(server, "Alice", first_code)
    assert (await recovered.me()).id == alice.profile.account_id
    assert second_code != first_code
    assert len(await alice.devices()) == 2

    with pytest.raises(ClientError) as used:
        await _recover(server, "alice", first_code)
    assert (used.value.status, used.value.code) == (401, "bad_recovery_code")

    again, _ = await _recover(server, "alice", second_code, revoke_others=True)
    assert [d.id for d in await again.devices()] == [again.profile.device_id]  # type: ignore[union-attr]
    with pytest.raises(ClientError) as revoked:
        await alice.me()
    assert revoked.value.code == "device_revoked"


async def test_wrong_code_and_unknown_handle_look_alike(server: Server) -> None:
    await server.signup("alice")
    errors = []
    for handle in ("alice", "nobody_at_all", "x"):  # held, unknown, impossible (3.4)
        with pytest.raises(ClientError) as bad:
            await _recover(server, handle, "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh")
        errors.append((bad.value.status, bad.value.code, bad.value.detail))
    assert errors[0] == errors[1] == (401, "bad_recovery_code", errors[0][2])


async def test_failed_recovery_revokes_nothing(server: Server) -> None:
    alice = await server.signup("alice")
    assert alice.profile is not None and alice.profile.recovery_code
    _key, public = new_device_key()
    with pytest.raises(ClientError) as bad:
        await server.client().request(
            "POST",
            "/v1/recovery",
            Enrollment,
            RecoveryRequest(
                handle="alice",
                recovery_code=alice.profile.recovery_code,
                device=DeviceEnrollment(name="\u0007", public_key=public),
                revoke_other_devices=True,
            ),
            auth=False,
        )
    assert bad.value.code == "invalid_value"
    assert len(await alice.devices()) == 1
    # The code was not spent either.
    await _recover(server, "alice", alice.profile.recovery_code)


async def test_recovery_attempts_are_budgeted_alike_for_real_and_unknown_handles(
    server: Server,
) -> None:
    """Past a handle's budget, recovery asks for the heaviest puzzle, for any handle alike;
    the client solves it and is answered as before (never locked out: test_floods.py)."""
    await server.signup("alice")
    outcomes = {}
    asked = {}
    for handle in ("alice", "nobody_at_all", "x"):  # held, unknown, impossible (3.4)
        codes = []
        for _ in range(6):
            with pytest.raises(ClientError) as bad:
                await _recover(server, handle, "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh")
            codes.append(bad.value.code)
        outcomes[handle] = codes
        puzzle = await server.client().request(
            "POST", "/v1/puzzles", Puzzle, PuzzleRequest(purpose="recovery", handle=handle),
            auth=False,
        )  # fmt: skip
        asked[handle] = puzzle.bits
    assert outcomes["alice"] == outcomes["nobody_at_all"] == outcomes["x"]
    assert outcomes["x"] == ["bad_recovery_code"] * 6
    assert asked["alice"] == asked["nobody_at_all"] == asked["x"] == server.app[GATE].heavy_bits
    assert server.app[GATE].heavy_bits > 0


async def test_recovery_concurrent_use_of_one_code_enrolls_once(server: Server) -> None:
    import asyncio

    alice = await server.signup("alice")
    assert alice.profile is not None and alice.profile.recovery_code
    code = alice.profile.recovery_code
    results = await asyncio.gather(
        *(_recover(server, "alice", code) for _ in range(3)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert len(await alice.devices()) == 2
