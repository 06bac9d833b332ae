"""Sign-up, sign-in (challenge-response with a device key) and account recovery."""

from __future__ import annotations

from directory import accounts, devices
from directory.storage import keys
from signaling import puzzle, signatures
from signaling.appkeys import CALLS, TOKENS
from signaling.calls.machine import DeviceRef
from signaling.protocol.bodies import (
    Challenge,
    Enrollment,
    Puzzle,
    PuzzleRequest,
    RecoveryRequest,
    SignupRequest,
    TokenRequest,
    TokenResponse,
)
from signaling.protocol.signing import signin_message
from signaling.rest.framework import Call, wire
from signaling.rest.table import API, BODY_ERRORS, gate, store, throttle_anonymous
from signaling.tokens import Principal


@API.route(
    "POST", "/v1/accounts",
    summary="Create an account with its first device; returns the recovery code once",
    tag="session", request=SignupRequest, response=Enrollment, status=201, auth=False,
    errors=(*BODY_ERRORS, "invalid_handle", "handle_reserved", "handle_taken",
            "invalid_public_key", "invalid_media_key", "invalid_value", "puzzle_required",
            "rate_limited", "overloaded"),
)  # fmt: skip
async def signup(call: Call) -> Enrollment:
    source = gate(call).source(call.request)
    gate(call).admit("signup", source)
    throttle_anonymous(call, enroll=True)
    body = call.body_as(SignupRequest)
    media_key = signatures.enrolled_media_key(body.device)
    await gate(call).redeem(store(call), "signup", source, body.puzzle, puzzle.scope_of(None))
    gate(call).enrolled()
    done = await accounts.signup(
        store(call), body.handle, body.display_name, body.device.name, body.device.public_key,
        media_key,
    )  # fmt: skip
    return wire(done, Enrollment)


@API.route(
    "POST", "/v1/auth/challenge",
    summary="Get a single-use nonce (valid 60 s) for a device to sign",
    tag="session", response=Challenge, auth=False, errors=("rate_limited", "overloaded"),
)  # fmt: skip
async def challenge(call: Call) -> Challenge:
    gate(call).admit("challenge", gate(call).source(call.request))
    throttle_anonymous(call, enroll=False)
    nonce = await devices.issue_challenge(store(call))
    return Challenge(nonce=nonce, expires_in=keys.NONCE_TTL_S)


@API.route(
    "POST", "/v1/auth/token",
    summary="Exchange a signed challenge for a short-lived access token",
    tag="session", request=TokenRequest, response=TokenResponse, auth=False,
    errors=(*BODY_ERRORS, "bad_challenge", "unknown_device", "bad_signature"),
)  # fmt: skip
async def token(call: Call) -> TokenResponse:
    body = call.body_as(TokenRequest)
    signed = signin_message(body.account_id, body.device_id, body.nonce)
    device = await devices.verify_signin(
        store(call), body.account_id, body.device_id, body.nonce, body.signature, signed
    )
    tokens = call.request.app[TOKENS]
    access = await tokens.issue(Principal(account_id=body.account_id, device_id=device.id))
    return TokenResponse(
        access_token=access,
        expires_in=tokens.ttl_s,
        account_id=body.account_id,
        device_id=device.id,
    )


@API.route(
    "POST", "/v1/recovery",
    summary="Enroll a new device with the recovery code; a new code replaces the used one",
    tag="session", request=RecoveryRequest, response=Enrollment, status=201, auth=False,
    errors=(*BODY_ERRORS, "bad_recovery_code", "puzzle_required", "rate_limited",
            "too_many_devices", "invalid_public_key", "invalid_media_key", "invalid_value",
            "overloaded"),
)  # fmt: skip
async def recover(call: Call) -> Enrollment:
    source = gate(call).source(call.request)
    gate(call).admit("recovery", source)
    throttle_anonymous(call, enroll=True)
    body = call.body_as(RecoveryRequest)
    media_key = signatures.enrolled_media_key(body.device)
    scope = puzzle.scope_of(accounts.recovery_handle(body.handle))
    bits = await gate(call).redeem(store(call), "recovery", source, body.puzzle, scope)
    gate(call).enrolled()
    account, device, code = await accounts.recover(
        store(call),
        body.handle,
        body.recovery_code,
        body.device.name,
        body.device.public_key,
        revoke_others=body.revoke_other_devices,
        media_key=media_key,
        puzzle_bits=bits,
        heavy_bits=gate(call).heavy_bits,
    )
    if body.revoke_other_devices:
        keep = DeviceRef(account.id, device.id)
        call.request.app[CALLS].close_account(account.id, keep=keep)
    return wire({"account": account, "device": device, "recovery_code": code}, Enrollment)


@API.route(
    "POST", "/v1/puzzles",
    summary="Get a puzzle to solve before a sign-up or recovery (free when the server is quiet)",
    tag="session", request=PuzzleRequest, response=Puzzle, auth=False,
    errors=(*BODY_ERRORS, "rate_limited", "overloaded"),
)  # fmt: skip
async def new_puzzle(call: Call) -> Puzzle:
    source = gate(call).source(call.request)
    gate(call).admit("challenge", source)
    throttle_anonymous(call, enroll=False)
    body = call.body_as(PuzzleRequest)
    if body.purpose == "signup":
        return await gate(call).issue(
            store(call), "signup", source, puzzle.scope_of(None), heavy=False
        )
    handle = accounts.recovery_handle(body.handle or "")
    heavy = await accounts.recovery_strained(store(call), handle)
    return await gate(call).issue(
        store(call), "recovery", source, puzzle.scope_of(handle), heavy=heavy
    )
