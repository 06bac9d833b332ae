"""What a calling device needs over REST: ICE servers, missed calls, push registration."""

from __future__ import annotations

from directory import history, push_tokens
from signaling import stun, turn
from signaling.appkeys import CONFIG
from signaling.errors import ApiError
from signaling.protocol.bodies import IceServers, MissedCalls, PushRegister
from signaling.protocol.messages import IceServer
from signaling.protocol.records import PushRegistration
from signaling.rest.framework import Call, wire
from signaling.rest.table import API, AUTH_ERRORS, BODY_ERRORS, ID_PARAM, store
from signaling.stun import STUN_PORT

_DEVICE = {"device_id": ID_PARAM}


@API.route(
    "GET", "/v1/turn",
    summary="The ICE servers for calls: TURN URIs with ephemeral credentials (coturn REST-API "
    "scheme) when the deployment has TURN, else the server's own STUN",
    tag="calls", response=IceServers, errors=AUTH_ERRORS,
)  # fmt: skip
async def get_turn(call: Call) -> IceServers:
    config = call.request.app[CONFIG]
    sfu = bool(config.media_url or config.media_registry)
    if not config.turn_uris or config.turn_secret is None:
        port = call.request.app.get(STUN_PORT)
        if port is None:
            return IceServers(ice_servers=[], ttl=0, sfu=sfu)
        own = IceServer(urls=[stun.uri(config.stun_host, call.request.host, port)])
        return IceServers(ice_servers=[own], ttl=min(config.turn_ttl_s, turn.MAX_TTL_S), sfu=sfu)
    username, password = turn.credentials(
        config.turn_secret, config.turn_ttl_s, store(call).clock()
    )
    server = IceServer(urls=list(config.turn_uris), username=username, credential=password)
    ttl = min(config.turn_ttl_s, turn.MAX_TTL_S)
    return IceServers(ice_servers=[server], ttl=ttl, sfu=sfu)


@API.route(
    "GET", "/v1/calls/missed", summary="Your missed calls of the last 30 days, newest first",
    tag="calls", response=MissedCalls, errors=AUTH_ERRORS,
)  # fmt: skip
async def list_missed(call: Call) -> MissedCalls:
    missed = await history.list_missed(store(call), call.principal.account_id)
    return wire({"missed_calls": missed}, MissedCalls)


@API.route(
    "DELETE", "/v1/calls/missed", summary="Clear your missed calls", tag="calls",
    status=204, errors=AUTH_ERRORS,
)  # fmt: skip
async def clear_missed(call: Call) -> None:
    await history.clear_missed(store(call), call.principal.account_id)


@API.route(
    "PUT", "/v1/devices/{device_id}/push",
    summary="Register how to wake this device for incoming calls while it is offline",
    tag="devices", request=PushRegister, response=PushRegistration, params=_DEVICE,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def register_push(call: Call) -> PushRegistration:
    body = call.body_as(PushRegister)
    if body.delivery == "direct" and body.provider == "webhook":
        raise ApiError("invalid_request", 'delivery "direct" is for provider apns or fcm.')
    registered = await push_tokens.register(
        store(call),
        call.principal.account_id,
        call.params["device_id"],
        body.provider,
        body.token,
        body.delivery,
    )
    return wire(registered, PushRegistration)


@API.route(
    "DELETE", "/v1/devices/{device_id}/push", summary="Remove a device's push registration",
    tag="devices", status=204, params=_DEVICE, errors=(*AUTH_ERRORS, "not_found"),
)  # fmt: skip
async def unregister_push(call: Call) -> None:
    await push_tokens.unregister(store(call), call.principal.account_id, call.params["device_id"])
