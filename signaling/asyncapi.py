"""The AsyncAPI 3.0 document of the call WebSocket, generated from the message Structs.

``python -m signaling.asyncapi`` prints it; ``docs/asyncapi.json`` is that output, and a test
fails when the two differ. The document takes a device's point of view: the ``send`` operation
lists what a device sends, ``receive`` what it receives, on the one channel ``/v1/ws``. Each
message is one Struct of ``signaling.protocol.messages``, named by its ``type`` tag.

The close codes, the ``error`` codes, the ``ended`` reasons and the limits are tables here,
written by hand from ``signaling/ws/endpoint.py``, ``signaling/calls/service.py``,
``sfu_calls.py`` and ``machine.py``; a test scans those modules and fails on a code missing here.
docs/protocol.md (section 11) explains all of it for client developers.
"""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import WSCloseCode

from signaling.calls import handover, media_keys, quality, sfu_calls
from signaling.config import Config
from signaling.protocol import closes
from signaling.protocol import messages as m
from signaling.ws import endpoint

ASYNCAPI_VERSION = "3.0.0"
API_VERSION = f"{m.PROTOCOL_VERSION}.0.0"
CHANNEL = "calls"
_SCHEMA_REF = "#/components/schemas/{name}"

ClientKind = type[m.ClientMessage]
ServerKind = type[m.ServerMessage]


def client_messages() -> tuple[ClientKind, ...]:
    """Every message a device sends, in the order of the ``ClientMessages`` union."""
    return typing.get_args(m.ClientMessages)


def server_messages() -> tuple[ServerKind, ...]:
    """Every message the server sends, in the order of the ``ServerMessages`` union."""
    return typing.get_args(m.ServerMessages)


def tag_of(kind: type[msgspec.Struct]) -> str:
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str), kind
    return tag


def message_key(kind: type[msgspec.Struct]) -> str:
    """The component name: ``client.<tag>`` or ``server.<tag>`` (``sdp`` and ``ice`` are tags
    of both directions)."""
    side = "client" if issubclass(kind, m.ClientMessage) else "server"
    return f"{side}.{tag_of(kind)}"


# --- close codes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CloseCode:
    name: str
    meaning: str


#: The deployment defaults of the timings that ``welcome`` and the tables mention.
DEFAULTS = Config()

CLOSE_CODES: dict[int, CloseCode] = {
    WSCloseCode.GOING_AWAY: CloseCode(
        "going away",
        "The server is shutting down. Reconnect with backoff; if `welcome.resumed` is then "
        "false, every call this device was in is over.",
    ),
    WSCloseCode.PROTOCOL_ERROR: CloseCode(
        "protocol error",
        "The device broke the WebSocket protocol: an unmasked frame (RFC 6455 section 5.1), "
        "an unknown opcode or a fragmented control frame.",
    ),
    WSCloseCode.UNSUPPORTED_DATA: CloseCode(
        "unsupported data", "The device sent a binary frame; every frame is JSON text."
    ),
    WSCloseCode.ABNORMAL_CLOSURE: CloseCode(
        "abnormal closure",
        "Never sent in a close frame: what a WebSocket library reports when the connection "
        f"drops without one, e.g. when the server got no pong within {endpoint.HEARTBEAT_S / 2:g} "
        f"s of its heartbeat ping (every {endpoint.HEARTBEAT_S:g} s of silence). Reconnect "
        "with the resume token.",
    ),
    WSCloseCode.INVALID_TEXT: CloseCode(
        "invalid frame payload data", "A text frame that is not JSON (or not valid UTF-8)."
    ),
    WSCloseCode.POLICY_VIOLATION: CloseCode(
        "policy violation",
        "After an `error` frame: sign-in refused (`auth_timeout`, `auth_required`, "
        f"`token_invalid`, `token_expired`, `device_revoked`), or more than "
        f"{endpoint.MAX_VIOLATIONS} `rate_limited` over this connection's life (the close "
        f"follows the {endpoint.MAX_VIOLATIONS + 1}-th). Without one: the device left "
        f"{endpoint.OUTBOX} messages unread.",
    ),
    WSCloseCode.MESSAGE_TOO_BIG: CloseCode(
        "message too big", f"A message over {closes.MAX_MESSAGE_BYTES // 1024} KiB."
    ),
    WSCloseCode.TRY_AGAIN_LATER: CloseCode(
        "try again later",
        "After an `unavailable` error frame: the store was unreachable while signing in; after "
        "a `rate_limited` one: this device signed in too often. Reconnect with backoff (and "
        "the resume token); live calls go on meanwhile.",
    ),
    closes.CLOSE_REPLACED: CloseCode(
        "replaced",
        "A newer connection of the same device signed in. Do not reconnect from this one.",
    ),
    closes.CLOSE_REVOKED: CloseCode(
        "revoked",
        "The device was revoked or its account erased; its calls have ended. Do not reconnect.",
    ),
    closes.CLOSE_DRAINING: CloseCode(
        "draining",
        "The server is shutting down and told this device to move (`reconnect`), which it did "
        "not do in time. Connect again and resume with the token from `reconnect`; another "
        "server answers.",
    ),
    closes.CLOSE_OPERATOR: CloseCode(
        "disconnected by an operator",
        "An operator closed this connection; its calls have ended (`operator`). The device may "
        "sign in and connect again, without its resume token.",
    ),
}


# --- error codes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorCode:
    meaning: str
    #: The close code that always follows this error, if any.
    close: int | None = None


_REFUSED = WSCloseCode.POLICY_VIOLATION

ERROR_CODES: dict[str, ErrorCode] = {
    # Signing in (signaling/ws/endpoint.py; token_* from TokenService.verify).
    "forbidden_origin": ErrorCode(
        "Not an `error` frame: the upgrade request carried an `Origin` that is neither the "
        "server's own nor an allowed one. The answer is an HTTP 403 problem; no WebSocket opens."
    ),
    "subprotocol_required": ErrorCode(
        f"Not an `error` frame: the upgrade request did not offer the `{closes.SUBPROTOCOL}` "
        "subprotocol. The answer is an HTTP 400 problem; no WebSocket opens."
    ),
    "auth_timeout": ErrorCode(
        f"No `bearer.` subprotocol and no `auth` message within {endpoint.AUTH_TIMEOUT_S:g} s.",
        _REFUSED,
    ),
    "auth_required": ErrorCode(
        "No `bearer.` subprotocol, and the first frame was not a valid `auth` message.", _REFUSED
    ),
    "token_invalid": ErrorCode(
        "The access token is malformed, too long, signed by an unknown key or otherwise not "
        "valid. Sign in again over REST, then reconnect.",
        _REFUSED,
    ),
    "token_expired": ErrorCode(
        "The access token has expired. Sign in again over REST, then reconnect.", _REFUSED
    ),
    "device_revoked": ErrorCode(
        "The token's device is no longer enrolled. Do not reconnect.", _REFUSED
    ),
    "draining": ErrorCode(
        "Not a frame when connecting: the upgrade got an HTTP 503 problem with `Retry-After` "
        "because this server is shutting down; connect again (another server answers). As an "
        "`error` frame with the `invite`'s or `group_invite`'s `ref`: this server is shutting "
        "down and no other server could place the call; no call was made. Reconnect, call "
        "again."
    ),
    "unavailable": ErrorCode(
        "The store (or, for `publish`, `subscribe_answer`, `view` and `group_invite`, the media "
        "server) "
        "did not answer or could not take the request; nothing happened. Retry shortly. "
        "While signing in: then close 1013; connect again with backoff."
    ),
    "already_authenticated": ErrorCode(
        "An `auth` message on a connection that is already signed in; it is ignored."
    ),
    # Any frame (signaling/ws/endpoint.py) and invites (signaling/calls/service.py).
    "invalid_message": ErrorCode(
        "The frame is JSON but not a valid device message (unknown `type`, unknown or missing "
        "field, wrong type, a length or range exceeded), or an `invite` with both or neither of "
        "`handle` and `account_id` (then with its `ref`). The message is ignored."
    ),
    "rate_limited": ErrorCode(
        f"Without `ref`: more than {endpoint.RATE_PER_S:g} messages/s (burst {endpoint.BURST}) "
        f"on this connection; the message was dropped unread. Counted over the connection's "
        f"life: the {endpoint.MAX_VIOLATIONS + 1}-th of these is followed by the close (1008). "
        "With the `invite`'s `ref`: the "
        f"account's invites are limited (burst {sfu_calls.INVITE_BURST}, then "
        f"{sfu_calls.INVITES_PER_S:g}/s); no call was made. As the answer to an `auth` "
        f"message: this device signed in more than {DEFAULTS.reconnect_burst} times at once "
        f"(then once per {DEFAULTS.reconnect_every_s:g} s); then close 1013."
    ),
    "invalid_handle": ErrorCode(
        "The `invite`'s `handle` breaks the handle rules or is reserved; no call was made."
    ),
    "invalid_target": ErrorCode("The `invite` names your own account; no call was made."),
    "account_suspended": ErrorCode(
        "The `invite` comes from an account an operator suspended; no call was made."
    ),
    # Calls (signaling/calls/service.py and the machine's Rejected, both with `call_id`).
    "unknown_call": ErrorCode(
        "No such call on this device: it never existed, has ended, was answered or declined on "
        "another device, or is someone else's."
    ),
    "not_ringing": ErrorCode(
        "`accept` or `decline` on a call that is not ringing on this device (the caller's own "
        "call, or one already answered here)."
    ),
    "not_in_call": ErrorCode(
        "`sdp`, `ice`, `media_keys` or `media_key_request` on a call that is not connected yet "
        "(or a group call not joined yet): wait for `accepted` or `joined`."
    ),
    "call_ended": ErrorCode(
        "The call has already ended. Not sent in practice: an ended call is forgotten at once, "
        "so later messages about it get `unknown_call`."
    ),
    "not_lost": ErrorCode(
        "Internal: a resume event for a device that had not lost its connection. Never sent."
    ),
    "unexpected_message": ErrorCode(
        "A group-call message (`mute`) on a 1:1 call, a 1:1 message (`sdp`, `ice`) on a "
        "group call, or `media_keys` / `media_key_request` on a 1:1 call that does not go "
        "through the SFU (its media is end to end already). The message is ignored."
    ),
    # Group calls and relayed 1:1 calls (signaling/calls/service.py, group.py, machine.py).
    "call_full": ErrorCode(
        "`accept` of a group call that already has its maximum number of participants."
    ),
    "not_host": ErrorCode(
        "`group_add` from a participant who is not the call's host: only the host adds people."
    ),
    "already_published": ErrorCode(
        "A second `publish` from a device whose media the SFU already has in this call (or, "
        'with `source: "screen"`, a second screen while the first is shared).'
    ),
    "not_published": ErrorCode(
        'A `publish` with `source: "screen"` from a device whose own media (its camera '
        "`publish`) is not in the call yet: publish that first, then share the screen."
    ),
    "use_sfu": ErrorCode(
        "`sdp` or `ice` on a 1:1 call whose `accepted` said `sfu: true`: `publish` instead."
    ),
    "invalid_sdp": ErrorCode(
        "The SDP cannot be used. For `publish`, `subscribe_answer` or `renegotiate_answer`: "
        "the SFU cannot use it (it "
        "does not parse, has no audio or video section, or does not answer the offer); sending "
        "the same SDP again fails the same way: fix the description (or rejoin). For `sdp` or "
        "`ice` on a relay-only call (hide-my-IP, signaling/calls/relay.py): it is not well formed "
        "(a stray line break or control character, a blank or folded line, a malformed line, "
        "candidate, `o=` or `c=` line, a duplicated `o=` or `c=`), or it names an address "
        "outside its candidates and address lines. Nothing changed and nothing was forwarded."
    ),
    "media_key_required": ErrorCode(
        "`group_invite`, `accept` or `publish` of a call through the SFU from a device that "
        "has not published a media key, or an `invite` (with its `ref`) from such a device "
        "whose own `relay_calls` is `always` on a server that relays through the SFU: publish "
        "one (`PUT /v1/devices/{device_id}/media-key`, docs/e2ee.md) and send the message "
        "again. Nothing changed (a ringing call rings on)."
    ),
    "stale_offer": ErrorCode(
        "A `renegotiate_answer` whose `revision` is not the outstanding `renegotiate` offer of "
        "this device's connection (answered already, or superseded). Nothing changed; answer "
        "the latest `renegotiate` (it is sent again after a resume)."
    ),
    "unknown_subscription": ErrorCode(
        "A `subscribe_answer` for a subscription the SFU does not know (never offered, or gone "
        "with its publisher), or a `view` of a participant the SFU does not know (not in the "
        "call, or gone). Nothing changed; wait for the next `subscribe_offer`."
    ),
}


# --- end reasons -------------------------------------------------------------------------------

END_REASONS: dict[str, str] = {
    "hangup": "A connected call was hung up by either device; both devices get it.",
    "cancelled": "To the caller: it hung up while the call was still ringing.",
    "declined": "To the caller and to the declining device: the callee declined "
    "(`decline`, or `hangup` while ringing).",
    "busy": "To the caller and to the declining device: the callee declined with `busy: true`.",
    "no_answer": "To the caller: nobody answered within the ring timeout "
    f"({DEFAULTS.ring_timeout_s:g} s), or the callee may not be rung.",
    "missed": "To every callee device still ringing: the caller cancelled, the ring timeout "
    "passed, or the caller's connection was lost and not resumed. Recorded as a missed call.",
    "answered_elsewhere": "To the callee's other ringing devices: one device answered.",
    "declined_elsewhere": "To the callee's other ringing devices: one device declined.",
    "peer_lost": "To both devices of a connected call (of a call still ringing: to its caller; "
    "the callee's ringing devices get `missed`): one of them lost its connection and did not "
    f"resume within the resume window ({DEFAULTS.resume_window_s:g} s), more than "
    f"{DEFAULTS.resume_queue_max} messages for it piled up meanwhile, or it signed in again "
    "without its resume token (then at once). The other device always receives it; the device "
    "that was lost only if it is connected again: after a fresh sign-in, right after its "
    "`welcome`. Also to the other device when one is revoked or its account erased.",
    "glare": "To every device of this call: both people called each other at once and the "
    "other call, the one with the smaller call id, goes on.",
    "media_failed": "Group or relayed call: the SFU lost this device's media; the others "
    "continue. Rejoin with `accept`. When the call's media node itself died, every device of the "
    "call gets it and the call is over: place a new one.",
    "operator": "To every device of this call: an operator of the server ended it.",
}


# --- limits ------------------------------------------------------------------------------------

LIMITS: dict[str, float | int] = {
    "max_message_bytes": closes.MAX_MESSAGE_BYTES,
    "messages_per_s": endpoint.RATE_PER_S,
    "message_burst": endpoint.BURST,
    "rate_violations_before_close": endpoint.MAX_VIOLATIONS,
    "auth_timeout_s": endpoint.AUTH_TIMEOUT_S,
    "heartbeat_s": endpoint.HEARTBEAT_S,
    "unread_messages_before_close": endpoint.OUTBOX,
    "invite_burst": sfu_calls.INVITE_BURST,
    "invites_per_s": sfu_calls.INVITES_PER_S,
    "quality_reports_min_interval_s": quality.MIN_INTERVAL_S,
    "media_key_requests_min_interval_s": media_keys.REQUEST_INTERVAL_S,
    "ring_timeout_s": DEFAULTS.ring_timeout_s,
    "resume_window_s": DEFAULTS.resume_window_s,
    "messages_kept_in_resume_window": DEFAULTS.resume_queue_max,
}


# --- descriptions and examples -----------------------------------------------------------------

#: For the Structs that have no docstring (a test keeps this to exactly those).
UNDOCUMENTED: dict[type[msgspec.Struct], str] = {
    m.Accept: "Answer a call ringing on this device.",
    m.Decline: "Decline a call ringing on this device; ``busy`` tells the caller you are busy.",
    m.Welcome: "First message on a signed-in connection: who you are, and the resume token.",
    m.Ended: "The call is over for this device; ``reason`` says why.",
    m.PeerDescription: "The peer's SDP offer or answer, for this device only.",
    m.PeerIce: "A trickled ICE candidate from the peer; an empty ``candidate`` ends gathering.",
    m.PeerResumed: "The other device is back within its resume window.",
    m.Pong: "The answer to ``ping``.",
    m.PublishAnswer: "The SFU's answer to this device's ``publish`` offer.",
    m.Error: "A refused message or a refused sign-in; ``code`` is stable, ``detail`` is not.",
}

_ALICE = m.Person(
    account_id="325fa52fa9d2291568e5f3dbbb917b5b", handle="alice", display_name="Alice Liddell"
)
_BOB = m.Person(account_id="65657c4d9cfc396dce5f71b56d9f0dc9", handle="bob", display_name="Bob")
_CALL = "e78c8da2a60beb6df664f1d17c066fca"
_OFFER = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n..."
_CANDIDATE = "candidate:3 1 udp 41885439 198.51.100.4 3478 typ relay raddr 0.0.0.0 rport 0"

_ALICE_KEYS: dict[str, Any] = {
    "device_key": "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w",
    "media_key": "c7LYt2qptTZgAyvI9di-46OuTjs6f9Sa3oH3NHo0qmg",
    "media_key_signature": "QTBwKNIuayriaWG3-b3rGioGkvoWSlDL4YRv8ECyvK7CwoNz_t_bm5RU9AKC6P8iZ5_"
    "NTm37xVeM3Lm8rs93Ag",
}
_BOB_KEYS: dict[str, Any] = {
    "device_key": "gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q",
    "media_key": "l8OxC01sEzp46l3MHPZCHT-Brjex9ijOFMpvzncw8zM",
    "media_key_signature": "tnFZC-Lx_g5xGiEqXAdtvVpmKeU_g6oeayTdhAf6v7_ob9cTyIiaaXvcEM1Lch78w"
    "Mmhbq2WfoxP28qY10GMDA",
}
_BLOB = (
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-P0BB"
    "QkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8"
)

EXAMPLES: dict[type[msgspec.Struct], msgspec.Struct] = {
    m.Auth: m.Auth(token="eyJhbGciOiJFZERTQSIs...", resume="ajkHlvVHJnupUv2rX1oQT8qFncrPWrB8"),
    m.Invite: m.Invite(handle="bob", media="video", ref="r1"),
    m.Accept: m.Accept(call_id=_CALL),
    m.Decline: m.Decline(call_id=_CALL, busy=True),
    m.Hangup: m.Hangup(call_id=_CALL),
    m.RelayFallback: m.RelayFallback(call_id=_CALL),
    m.Description: m.Description(call_id=_CALL, kind="offer", sdp=_OFFER),
    m.Ice: m.Ice(call_id=_CALL, candidate=_CANDIDATE, sdp_mid="0", sdp_mline_index=0),
    m.GroupInvite: m.GroupInvite(handles=["bob", "carol"], media="video", ref="g1"),
    m.Publish: m.Publish(call_id=_CALL, sdp=_OFFER, bundle=True),
    m.Unpublish: m.Unpublish(call_id=_CALL, source="screen"),
    m.SubscribeAnswer: m.SubscribeAnswer(call_id=_CALL, subscription="s-7f3a", sdp=_OFFER),
    m.RenegotiateAnswer: m.RenegotiateAnswer(call_id=_CALL, revision=2, sdp=_OFFER),
    m.View: m.View(call_id=_CALL, participant="0d4b8e2a6c1f9a37", max_height=180),
    m.GroupAdd: m.GroupAdd(call_id=_CALL, handles=["dave"]),
    m.Mute: m.Mute(call_id=_CALL, audio_muted=True, video_muted=False),
    m.Ping: m.Ping(),
    m.MediaKeys: m.MediaKeys(
        call_id=_CALL,
        kid=3,
        keys=[m.MediaKeyFor(participant="0d4b8e2a6c1f9a37", blob=_BLOB)],
    ),
    m.MediaKeyRequest: m.MediaKeyRequest(call_id=_CALL, participant="0d4b8e2a6c1f9a37"),
    m.Quality: m.Quality(
        call_id=_CALL, rtt_ms=42.0, jitter_ms=3.5, loss=0.01, bitrate_kbps=850.0, relayed=False
    ),
    m.Welcome: m.Welcome(
        account_id=_ALICE.account_id,
        device_id="4fa544114f1bcecb7d8e3d2e8a145308",
        resume_token="ajkHlvVHJnupUv2rX1oQT8qFncrPWrB8",
        resume_window_s=DEFAULTS.resume_window_s,
    ),
    m.Ringing: m.Ringing(call_id=_CALL, ref="r1"),
    m.Incoming: m.Incoming(call_id=_CALL, caller=_ALICE, media="video"),
    m.Accepted: m.Accepted(call_id=_CALL, role="caller", relay_only=False, peer=_BOB),
    m.Relayed: m.Relayed(call_id=_CALL),
    m.Ended: m.Ended(call_id=_CALL, reason="hangup"),
    m.PeerDescription: m.PeerDescription(call_id=_CALL, kind="offer", sdp=_OFFER, restart=True),
    m.PeerIce: m.PeerIce(call_id=_CALL, candidate=_CANDIDATE, sdp_mid="0", sdp_mline_index=0),
    m.PeerReconnecting: m.PeerReconnecting(call_id=_CALL),
    m.PeerResumed: m.PeerResumed(call_id=_CALL),
    m.PeerMute: m.PeerMute(call_id=_CALL, audio_muted=True, video_muted=True),
    m.Joined: m.Joined(
        call_id=_CALL, participant="9c1e5a0b7d3f2e64", media="video", host=_ALICE, ref="g1"
    ),
    m.Participants: m.Participants(
        call_id=_CALL,
        participants=[
            m.Participant(participant="9c1e5a0b7d3f2e64", person=_ALICE, **_ALICE_KEYS),
            m.Participant(
                participant="0d4b8e2a6c1f9a37", person=_BOB, audio_muted=True, **_BOB_KEYS
            ),
        ],
    ),
    m.ActiveSpeaker: m.ActiveSpeaker(call_id=_CALL, participant="0d4b8e2a6c1f9a37"),
    m.PublishAnswer: m.PublishAnswer(call_id=_CALL, sdp=_OFFER),
    m.SubscribeOffer: m.SubscribeOffer(
        call_id=_CALL, subscription="s-7f3a", participant="0d4b8e2a6c1f9a37", sdp=_OFFER
    ),
    m.Renegotiate: m.Renegotiate(
        call_id=_CALL,
        revision=2,
        sdp=_OFFER,
        streams=[
            m.Stream(mid="2", participant="0d4b8e2a6c1f9a37", source="camera", kind="audio"),
            m.Stream(mid="3", participant="0d4b8e2a6c1f9a37", source="camera", kind="video"),
        ],
    ),
    m.Unpublished: m.Unpublished(call_id=_CALL, participant="0d4b8e2a6c1f9a37", source="screen"),
    m.MediaKey: m.MediaKey(call_id=_CALL, participant="9c1e5a0b7d3f2e64", kid=3, blob=_BLOB),
    m.PeerMediaKeyRequest: m.PeerMediaKeyRequest(call_id=_CALL, participant="9c1e5a0b7d3f2e64"),
    m.Pong: m.Pong(),
    m.Reconnect: m.Reconnect(
        resume_token="ajkHlvVHJnupUv2rX1oQT8qFncrPWrB8",
        resume_window_s=DEFAULTS.resume_window_s,
        within_s=handover.MOVE_WITHIN_S,
    ),
    m.Error: m.Error(code="unknown_call", detail="No such call on this device.", call_id=_CALL),
}


def description(kind: type[msgspec.Struct]) -> str:
    doc = kind.__doc__
    return inspect.cleandoc(doc) if doc else UNDOCUMENTED[kind]


def example(kind: type[msgspec.Struct]) -> dict[str, Any]:
    """The example as it travels: encoded by msgspec, which omits the defaults of server
    messages; absent optional fields of device messages are left out too."""
    payload: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(EXAMPLES[kind]))
    if issubclass(kind, m.ClientMessage):
        payload = {key: value for key, value in payload.items() if value is not None}
    return payload


# --- the document ------------------------------------------------------------------------------


def _message(kind: type[msgspec.Struct], schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": tag_of(kind),
        "title": kind.__name__,
        "description": description(kind),
        "payload": schema,
        "examples": [{"name": tag_of(kind), "payload": example(kind)}],
    }


def _operation(
    action: str, kinds: tuple[type[msgspec.Struct], ...], title: str, summary: str
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{CHANNEL}"},
        "title": title,
        "summary": summary,
        "messages": [
            {"$ref": f"#/channels/{CHANNEL}/messages/{message_key(kind)}"} for kind in kinds
        ],
    }


_SUBPROTOCOL_HEADER = (
    f"`{closes.SUBPROTOCOL}, bearer.<access token>`, optionally followed by "
    "`, resume.<resume token>`. Without `bearer.`, the first message must be `auth`."
)


def document() -> dict[str, Any]:
    kinds: list[type[msgspec.Struct]] = [*client_messages(), *server_messages()]
    schemas, components = msgspec.json.schema_components(kinds, ref_template=_SCHEMA_REF)
    messages = {
        message_key(kind): _message(kind, schema)
        for kind, schema in zip(kinds, schemas, strict=True)
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Callbook call protocol",
            "version": API_VERSION,
            "description": (
                "One WebSocket per device carries the 1:1 call protocol. Frames are JSON text; "
                "`type` names the message. Written from a device's side: `send` is what a "
                "device sends, `receive` what it receives. See docs/protocol.md, section 11."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "The default of `callbook serve`; deployments use `wss`.",
                "security": [{"$ref": "#/components/securitySchemes/bearer"}],
            }
        },
        "channels": {
            CHANNEL: {
                "address": "/v1/ws",
                "title": "Call WebSocket",
                "description": (
                    "Opened with `GET /v1/ws` and the WebSocket upgrade. Never put the token "
                    "in the URL."
                ),
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Sec-WebSocket-Protocol": {
                                    "type": "string",
                                    "description": _SUBPROTOCOL_HEADER,
                                },
                                "Origin": {
                                    "type": "string",
                                    "description": "Native clients send none; a browser's "
                                    "must be the server's own or an allowed origin.",
                                },
                            },
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
            }
        },
        "operations": {
            "send": _operation(
                "send", client_messages(), "Device to server", "Messages a device sends."
            ),
            "receive": _operation(
                "receive", server_messages(), "Server to device", "Messages a device receives."
            ),
        },
        "components": {
            "schemas": components,
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "httpApiKey",
                    "name": "Sec-WebSocket-Protocol",
                    "in": "header",
                    "description": (
                        "The access token of `POST /v1/auth/token`: " + _SUBPROTOCOL_HEADER
                    ),
                }
            },
        },
        "x-close-codes": {
            str(int(code)): {"name": close.name, "meaning": close.meaning}
            for code, close in sorted(CLOSE_CODES.items())
        },
        "x-error-codes": {
            code: {"meaning": error.meaning}
            | ({} if error.close is None else {"close": int(error.close)})
            for code, error in ERROR_CODES.items()
        },
        "x-end-reasons": END_REASONS,
        "x-limits": LIMITS,
    }


def render() -> str:
    return json.dumps(document(), indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
