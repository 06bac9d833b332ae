"""The signed-in person's own account: profile and settings, export, erase."""

from __future__ import annotations

import msgspec

from directory import accounts, portability
from signaling.appkeys import CALLS
from signaling.protocol.bodies import AccountUpdate
from signaling.protocol.records import Account, Export
from signaling.rest.framework import Call, wire
from signaling.rest.table import API, AUTH_ERRORS, BODY_ERRORS, store


@API.route(
    "GET", "/v1/me", summary="Your account and privacy settings",
    tag="account", response=Account, errors=AUTH_ERRORS,
)  # fmt: skip
async def get_me(call: Call) -> Account:
    return wire(await accounts.get(store(call), call.principal.account_id), Account)


@API.route(
    "PATCH", "/v1/me",
    summary="Change handle, display name, discoverability, who can call you, or relayed calls",
    tag="account", request=AccountUpdate, response=Account,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, "invalid_handle", "handle_reserved", "handle_taken",
            "invalid_value"),
)  # fmt: skip
async def update_me(call: Call) -> Account:
    body = call.body_as(AccountUpdate)
    display_name = None if body.display_name is msgspec.UNSET else body.display_name
    updated = await accounts.update(
        store(call),
        call.principal.account_id,
        handle=None if body.handle is msgspec.UNSET else body.handle,
        display_name=display_name,
        clear_display_name=body.display_name is None,
        discoverable=None if body.discoverable is msgspec.UNSET else body.discoverable,
        who_can_call=None if body.who_can_call is msgspec.UNSET else body.who_can_call,
        hide_ip=None if body.hide_ip is msgspec.UNSET else body.hide_ip,
        relay_calls=None if body.relay_calls is msgspec.UNSET else body.relay_calls,
    )
    return wire(updated, Account)


@API.route(
    "GET", "/v1/me/export", summary="Everything the server stores about you, as one document",
    tag="account", response=Export, errors=AUTH_ERRORS,
)  # fmt: skip
async def export(call: Call) -> Export:
    return wire(await portability.export(store(call), call.principal.account_id), Export)


@API.route(
    "DELETE", "/v1/me",
    summary="Erase your account, devices, contacts and blocks; your handle is quarantined",
    tag="account", status=204, errors=AUTH_ERRORS,
)  # fmt: skip
async def erase(call: Call) -> None:
    await portability.erase(store(call), call.principal.account_id)
    call.request.app[CALLS].close_account(call.principal.account_id)
