"""Other people: lookup by exact handle, contacts and blocks."""

from __future__ import annotations

from directory import contacts, lookup
from signaling.errors import ApiError
from signaling.protocol.bodies import BlockAdd, BlockList, ContactAdd, ContactList, ContactUpdate
from signaling.protocol.records import Block, Card, Contact
from signaling.rest.framework import Call, Param, wire
from signaling.rest.table import API, AUTH_ERRORS, BODY_ERRORS, ID_PARAM, store

_ACCOUNT = {"account_id": ID_PARAM}
_HANDLE = {"handle": Param("[^/]{1,128}", "A handle as typed")}
_LOOKUP_ERRORS = ("not_found", "rate_limited")


@API.route(
    "GET", "/v1/handles/{handle}",
    summary="Find a person by exact handle (rate-limited; no search, no listing)",
    tag="people", response=Card, params=_HANDLE, errors=(*AUTH_ERRORS, *_LOOKUP_ERRORS),
)  # fmt: skip
async def find(call: Call) -> Card:
    card = await lookup.find(store(call), call.principal.account_id, call.params["handle"])
    return wire(card, Card)


@API.route(
    "GET", "/v1/contacts", summary="Your contacts", tag="contacts",
    response=ContactList, errors=AUTH_ERRORS,
)  # fmt: skip
async def list_contacts(call: Call) -> ContactList:
    listed = await contacts.list_contacts(store(call), call.principal.account_id)
    return wire({"contacts": listed}, ContactList)


@API.route(
    "POST", "/v1/contacts", summary="Add a contact by handle, with a private nickname",
    tag="contacts", request=ContactAdd, response=Contact, status=201,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, *_LOOKUP_ERRORS, "invalid_value"),
)  # fmt: skip
async def add_contact(call: Call) -> Contact:
    body = call.body_as(ContactAdd)
    owner = call.principal.account_id
    added = await contacts.add_contact(store(call), owner, body.handle, body.nickname)
    return wire(added, Contact)


@API.route(
    "PATCH", "/v1/contacts/{account_id}", summary="Change a contact's nickname",
    tag="contacts", request=ContactUpdate, status=204, params=_ACCOUNT,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, "not_found", "invalid_value"),
)  # fmt: skip
async def update_contact(call: Call) -> None:
    body = call.body_as(ContactUpdate)
    owner = call.principal.account_id
    await contacts.set_nickname(store(call), owner, call.params["account_id"], body.nickname)


@API.route(
    "DELETE", "/v1/contacts/{account_id}", summary="Remove a contact", tag="contacts",
    status=204, params=_ACCOUNT, errors=(*AUTH_ERRORS, "not_found"),
)  # fmt: skip
async def remove_contact(call: Call) -> None:
    await contacts.remove_contact(store(call), call.principal.account_id, call.params["account_id"])


@API.route(
    "GET", "/v1/blocks", summary="Accounts you block", tag="blocks",
    response=BlockList, errors=AUTH_ERRORS,
)  # fmt: skip
async def list_blocks(call: Call) -> BlockList:
    listed = await contacts.list_blocks(store(call), call.principal.account_id)
    return wire({"blocks": listed}, BlockList)


@API.route(
    "POST", "/v1/blocks", summary="Block an account by handle or by account id",
    tag="blocks", request=BlockAdd, response=Block, status=201,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, *_LOOKUP_ERRORS, "invalid_value"),
)  # fmt: skip
async def add_block(call: Call) -> Block:
    body = call.body_as(BlockAdd)
    owner = call.principal.account_id
    if (body.handle is None) == (body.account_id is None):
        raise ApiError("invalid_request", "Give exactly one of handle and account_id.")
    if body.handle is not None:
        return wire(await contacts.block(store(call), owner, body.handle), Block)
    assert body.account_id is not None
    return wire(await contacts.block_account(store(call), owner, body.account_id), Block)


@API.route(
    "DELETE", "/v1/blocks/{account_id}", summary="Unblock an account", tag="blocks",
    status=204, params=_ACCOUNT, errors=(*AUTH_ERRORS, "not_found"),
)  # fmt: skip
async def unblock(call: Call) -> None:
    await contacts.unblock(store(call), call.principal.account_id, call.params["account_id"])
