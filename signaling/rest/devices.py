"""The devices of the signed-in account: list, add, rename, revoke, publish a media key."""

from __future__ import annotations

from directory import devices
from signaling import signatures
from signaling.appkeys import CALLS
from signaling.calls.machine import DeviceRef
from signaling.errors import ApiError
from signaling.protocol.bodies import DeviceEnrollment, DeviceList, DeviceRename, MediaKeyPublish
from signaling.protocol.records import Device
from signaling.rest.framework import Call, wire
from signaling.rest.table import API, AUTH_ERRORS, BODY_ERRORS, ID_PARAM, store

_DEVICE = {"device_id": ID_PARAM}


@API.route(
    "GET", "/v1/devices", summary="Your devices", tag="devices",
    response=DeviceList, errors=AUTH_ERRORS,
)  # fmt: skip
async def list_devices(call: Call) -> DeviceList:
    listed = await devices.list_all(store(call), call.principal.account_id)
    return wire({"devices": listed}, DeviceList)


@API.route(
    "POST", "/v1/devices", summary="Enroll another device (at most 10 per account)",
    tag="devices", request=DeviceEnrollment, response=Device, status=201,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, "too_many_devices", "invalid_public_key",
            "invalid_media_key", "invalid_value", "not_found"),
)  # fmt: skip
async def add_device(call: Call) -> Device:
    body = call.body_as(DeviceEnrollment)
    media_key = signatures.enrolled_media_key(body)
    added = await devices.add(
        store(call), call.principal.account_id, body.name, body.public_key, media_key
    )
    return wire(added, Device)


@API.route(
    "PATCH", "/v1/devices/{device_id}", summary="Rename a device", tag="devices",
    request=DeviceRename, response=Device, params=_DEVICE,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, "not_found", "invalid_value"),
)  # fmt: skip
async def rename_device(call: Call) -> Device:
    body = call.body_as(DeviceRename)
    account_id = call.principal.account_id
    renamed = await devices.rename(store(call), account_id, call.params["device_id"], body.name)
    return wire(renamed, Device)


@API.route(
    "DELETE", "/v1/devices/{device_id}",
    summary="Revoke a device: its next request is refused", tag="devices", status=204,
    params=_DEVICE, errors=(*AUTH_ERRORS, "not_found"),
)  # fmt: skip
async def revoke_device(call: Call) -> None:
    account_id, device_id = call.principal.account_id, call.params["device_id"]
    await devices.revoke(store(call), account_id, device_id)
    call.request.app[CALLS].close_device(DeviceRef(account_id, device_id))


@API.route(
    "PUT", "/v1/devices/{device_id}/media-key",
    summary="Publish or rotate this device's X25519 media key, signed by its sign-in key",
    tag="devices", request=MediaKeyPublish, response=Device, params=_DEVICE,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, "not_this_device", "invalid_media_key", "not_found"),
)  # fmt: skip
async def publish_media_key(call: Call) -> Device:
    body = call.body_as(MediaKeyPublish)
    account_id, device_id = call.principal.account_id, call.params["device_id"]
    if device_id != call.principal.device_id:
        await devices.get(store(call), account_id, device_id)  # not_found before refusing
        raise ApiError("not_this_device", "A device publishes its own media key only.")
    device = await devices.get(store(call), account_id, device_id)
    signed = signatures.check_media_key(device.public_key, body.media_key, body.media_key_signature)
    published = await devices.publish_media_key(store(call), account_id, device_id, signed)
    return wire(published, Device)
