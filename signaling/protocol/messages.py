"""Every message of the call WebSocket: one Struct each, in two tagged unions.

Frames are JSON text; the ``type`` field names the message. The AsyncAPI document
(``docs/asyncapi.json``) is generated from these definitions.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

PROTOCOL_VERSION = 1

CallId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$", description="Call id")]
AccountId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$", description="Account id")]
Ref = Annotated[str, msgspec.Meta(max_length=64, description="Echoed back in the answer")]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=32_768)]
Candidate = Annotated[str, msgspec.Meta(max_length=1024)]
Media = Literal["audio", "video"]
EndReason = Literal[
    "hangup",
    "cancelled",
    "declined",
    "busy",
    "no_answer",
    "missed",
    "answered_elsewhere",
    "declined_elsewhere",
    "peer_lost",
    "glare",
    "media_failed",
    "operator",
]
SubscriptionId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_GROUP_INVITEES = 15
ParticipantId = Annotated[
    str, msgspec.Meta(pattern="^[0-9a-f]{1,64}$", description="A participant id in a call")
]
#: A sealed media key for one recipient (docs/e2ee.md): the server routes it, never reads it.
KeyBlob = Annotated[
    str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,256}$", description="base64url, unpadded")
]
KeyId = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1, description="The sender's key id")]
#: What a published track shows: the camera (with the microphone) or a shared screen.
Source = Literal["camera", "screen"]


class ClientMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    """Base of messages a device sends."""


class ServerMessage(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of messages the server sends."""


# --- device -> server ------------------------------------------------------------------------


class Auth(ClientMessage, tag="auth"):
    """First message when the token is not in ``Sec-WebSocket-Protocol``; optionally resumes."""

    token: Annotated[str, msgspec.Meta(max_length=2048)]
    resume: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class Invite(ClientMessage, tag="invite"):
    """Call a person by handle or account id; exactly one of the two."""

    handle: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    account_id: AccountId | None = None
    media: Media = "audio"
    ref: Ref | None = None


class Accept(ClientMessage, tag="accept"):
    call_id: CallId


class Decline(ClientMessage, tag="decline"):
    call_id: CallId
    busy: bool = False


class Hangup(ClientMessage, tag="hangup"):
    """Hang up a connected call, or cancel one still ringing."""

    call_id: CallId


class RelayFallback(ClientMessage, tag="relay_fallback"):
    """The peer-to-peer path of a connected 1:1 call failed (ICE ``failed``, or no media a few
    seconds after ``accepted``): move the call to a relay without ending it."""

    call_id: CallId


class Description(ClientMessage, tag="sdp"):
    """An SDP offer or answer for the peer; ``restart`` marks an ICE-restart offer, and the
    answer to one (so that a caller that offered again after ``relayed`` can tell it apart)."""

    call_id: CallId
    kind: Literal["offer", "answer"]
    sdp: Sdp
    restart: bool = False


class Ice(ClientMessage, tag="ice"):
    """A trickled ICE candidate for the peer; an empty ``candidate`` ends gathering.

    Trickling is optional: candidates may stay in the SDP instead. Send both ``sdp_mid`` and
    ``sdp_mline_index``: the peers' WebRTC stacks differ in which one they need.
    """

    call_id: CallId
    candidate: Candidate
    sdp_mid: (
        Annotated[str, msgspec.Meta(max_length=64, description="The candidate's media section")]
        | None
    ) = None
    sdp_mline_index: (
        Annotated[int, msgspec.Meta(ge=0, le=64, description="The index of that section")] | None
    ) = None


class GroupInvite(ClientMessage, tag="group_invite"):
    """Start a group call and join it; every listed handle rings like a 1:1 call."""

    handles: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]],
        msgspec.Meta(min_length=1, max_length=MAX_GROUP_INVITEES),
    ]
    media: Media = "audio"
    ref: Ref | None = None


class GroupAdd(ClientMessage, tag="group_add"):
    """The host rings more people into its running group call (like ``group_invite``'s)."""

    call_id: CallId
    handles: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]],
        msgspec.Meta(min_length=1, max_length=MAX_GROUP_INVITEES),
    ]


class Publish(ClientMessage, tag="publish"):
    """This device's media into the call's SFU: an SDP offer with its candidates gathered.

    ``source: "screen"`` publishes its shared screen instead: a second connection whose offer
    has exactly one video section, sent beside the camera's (11.15.1)."""

    call_id: CallId
    sdp: Sdp
    source: Source = "camera"
    #: One connection for everything (11.15.2): what this device receives comes over this same
    #: connection, added by ``renegotiate`` offers; it gets no ``subscribe_offer``. Camera only.
    bundle: bool = False


class Unpublish(ClientMessage, tag="unpublish"):
    """Stop sending ``source`` through the SFU: ``screen`` ends this device's screen share."""

    call_id: CallId
    source: Literal["screen"] = "screen"


class SubscribeAnswer(ClientMessage, tag="subscribe_answer"):
    """The answer to a ``subscribe_offer``: start receiving that participant's media."""

    call_id: CallId
    subscription: SubscriptionId
    sdp: Sdp


class RenegotiateAnswer(ClientMessage, tag="renegotiate_answer"):
    """The answer to ``renegotiate`` offer ``revision`` of this device's one connection."""

    call_id: CallId
    revision: Annotated[int, msgspec.Meta(ge=1)]
    sdp: Sdp


class View(ClientMessage, tag="view"):
    """The largest picture this device wants of one participant's ``source`` (its tile size,
    a pinned speaker, a hidden tab): the SFU then forwards that participant's simulcast video in
    the highest layer no taller than ``max_height`` pixels; 0 pauses the video, ``null`` lifts
    the limit (the default). A single-layer publisher's video is forwarded as it is."""

    call_id: CallId
    participant: ParticipantId
    source: Source = "camera"
    max_height: Annotated[int, msgspec.Meta(ge=0, le=8192)] | None = None


class Mute(ClientMessage, tag="mute"):
    """What this device is sending in a call; shown to the other participants (group) or
    passed to the other device as ``peer_mute`` (1:1, once connected)."""

    call_id: CallId
    audio_muted: bool
    video_muted: bool
    #: It shares its screen (a second video track, 11.15.1): the others show it large.
    screen: bool = False


class Ping(ClientMessage, tag="ping"):
    """Application-level keepalive for clients that cannot see WebSocket pings."""


class Quality(ClientMessage, tag="quality"):
    """This device's view of a connected call's media, from its WebRTC stats, for operators.

    At most one per 2 s per device counts; more are dropped silently. Send one every ~5 s.
    """

    call_id: CallId
    rtt_ms: Annotated[float, msgspec.Meta(ge=0, le=60_000)]
    jitter_ms: Annotated[float, msgspec.Meta(ge=0, le=60_000)]
    loss: Annotated[float, msgspec.Meta(ge=0, le=1, description="Fraction of packets lost")]
    bitrate_kbps: Annotated[float, msgspec.Meta(ge=0, le=100_000)]
    #: Whether the selected ICE candidate pair uses a TURN relay, when the device knows.
    relayed: bool | None = None


class MediaKeyFor(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One recipient's copy of the sender's media key."""

    participant: ParticipantId
    blob: KeyBlob


class MediaKeys(ClientMessage, tag="media_keys"):
    """Your new media key, sealed to each named participant of an SFU call (docs/e2ee.md).

    Each named participant still in the call gets ``media_key``; others are skipped silently.
    """

    call_id: CallId
    kid: KeyId
    keys: Annotated[list[MediaKeyFor], msgspec.Meta(min_length=1, max_length=MAX_GROUP_INVITEES)]


class MediaKeyRequest(ClientMessage, tag="media_key_request"):
    """Ask ``participant`` for its current media key (frames arrived that no key decrypts).

    At most one per second per (you, ``participant``) is passed on; more are dropped silently.
    """

    call_id: CallId
    participant: ParticipantId


ClientMessages = (
    Auth
    | Invite
    | Accept
    | Decline
    | Hangup
    | RelayFallback
    | Description
    | Ice
    | GroupInvite
    | GroupAdd
    | Publish
    | Unpublish
    | SubscribeAnswer
    | RenegotiateAnswer
    | View
    | Mute
    | Ping
    | Quality
    | MediaKeys
    | MediaKeyRequest
)


# --- server -> device ------------------------------------------------------------------------


class IceServer(msgspec.Struct, kw_only=True):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Welcome(ServerMessage, tag="welcome"):
    account_id: str
    device_id: str
    resume_token: str
    resume_window_s: float
    protocol: int = PROTOCOL_VERSION
    resumed: bool = False


class Person(msgspec.Struct, kw_only=True):
    account_id: str
    handle: str | None
    display_name: str | None


class Ringing(ServerMessage, tag="ringing"):
    """To the caller: the call exists and is ringing (sent the same way whoever the callee is)."""

    call_id: str
    ref: str | None = None


class Incoming(ServerMessage, tag="incoming"):
    """To every online device of the callee; ``busy`` means the device is in another call.

    ``group`` marks an invitation to a group call: accepting joins it.
    """

    call_id: str
    caller: Person
    media: Media
    busy: bool = False
    group: bool = False


class Participant(msgspec.Struct, kw_only=True):
    participant: str
    person: Person
    audio_muted: bool = False
    video_muted: bool = False
    #: It shares its screen (``mute``'s ``screen``): shown large.
    screen: bool = False
    # False while the device is reconnecting within its resume window.
    connected: bool = True
    #: The participant's device's Ed25519 sign-in key (base64url): verifies the two below and
    #: the signatures of its key blobs.
    device_key: str | None = None
    #: Its X25519 media key and that key's signature (docs/e2ee.md); null for a device that
    #: joined without one (none can since media keys are required).
    media_key: str | None = None
    media_key_signature: str | None = None


class Accepted(ServerMessage, tag="accepted"):
    """To both devices of a call that was answered: negotiate media now.

    The caller sends the offer. With ``relay_only`` both sides must set
    ``iceTransportPolicy: relay``: the server forwards relay candidates only. With ``sfu``
    there is no peer-to-peer offer at all: each side publishes to the SFU and receives the other
    through it (``publish`` / ``subscribe_offer``), so neither sees the other's address; then
    ``participant`` is this device's id in the SFU room and ``participants`` lists both devices
    with their keys, for end-to-end encrypted media (``media_keys``).
    """

    call_id: str
    role: Literal["caller", "callee"]
    relay_only: bool
    peer: Person
    sfu: bool = False
    #: With ``sfu``: this device's participant id in the call's SFU room, and both devices as
    #: a group call's ``participants`` lists them, with their keys (docs/e2ee.md).
    participant: str | None = None
    participants: list[Participant] | None = None


class Relayed(ServerMessage, tag="relayed"):
    """To both devices of a 1:1 call that moves to a relay (after ``relay_fallback``): the call
    is relay-only from now on. Without ``sfu``: drop the peer connection's path and negotiate
    again through TURN (``iceTransportPolicy: relay``; the caller offers, with ``restart``).
    With ``sfu``: stop sending peer-to-peer media and publish to the SFU, introduced by
    ``participant`` and ``participants`` as ``accepted`` introduces a call through the SFU."""

    call_id: str
    sfu: bool = False
    participant: str | None = None
    participants: list[Participant] | None = None


class Ended(ServerMessage, tag="ended"):
    call_id: str
    reason: EndReason


class PeerDescription(ServerMessage, tag="sdp"):
    call_id: str
    kind: Literal["offer", "answer"]
    sdp: str
    restart: bool = False


class PeerIce(ServerMessage, tag="ice"):
    call_id: str
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


class PeerReconnecting(ServerMessage, tag="peer_reconnecting"):
    """The other device lost its connection; it may resume within the window."""

    call_id: str


class PeerResumed(ServerMessage, tag="peer_resumed"):
    call_id: str


class PeerMute(ServerMessage, tag="peer_mute"):
    """In a 1:1 call: what the other device now sends, as its ``mute`` said (a group call
    shows the same in ``participants``)."""

    call_id: str
    audio_muted: bool
    video_muted: bool
    #: It shares its screen: a second video track (11.5.13).
    screen: bool = False


class Joined(ServerMessage, tag="joined"):
    """You are in the group call as ``participant``: publish your media now."""

    call_id: str
    participant: str
    media: Media
    host: Person
    ref: str | None = None
    #: How long invitees ring (seconds): whoever has not joined by then is no longer rung.
    ring_timeout_s: float | None = None


class Participants(ServerMessage, tag="participants"):
    """Everyone in a group call, sent to all of them whenever it changes. Each entry carries
    the device's keys: check ``media_key_signature`` with ``device_key`` (docs/e2ee.md)."""

    call_id: str
    participants: list[Participant]


class ActiveSpeaker(ServerMessage, tag="active_speaker"):
    """Who is speaking now (at most about once a second); null when nobody is."""

    call_id: str
    participant: str | None


class PublishAnswer(ServerMessage, tag="publish_answer"):
    call_id: str
    sdp: str
    #: Which ``publish`` this answers.
    source: Source = "camera"


class SubscribeOffer(ServerMessage, tag="subscribe_offer"):
    """The SFU offers one participant's media; reply with ``subscribe_answer``.

    ``participant`` is an id that ``participants`` introduced, or in a 1:1 call through the SFU
    the other device's id from ``accepted.participants``."""

    call_id: str
    subscription: str
    participant: str
    sdp: str
    #: ``screen``: the participant's shared screen (one video track), not its camera.
    source: Source = "camera"


class Unpublished(ServerMessage, tag="unpublished"):
    """``participant`` stopped sending ``source`` (its screen): close that subscription."""

    call_id: str
    participant: str
    source: Source


class Stream(msgspec.Struct, kw_only=True):
    """What one m-section of a bundled connection carries: decrypt it with ``participant``'s
    key."""

    mid: str
    participant: str
    source: Source
    kind: Literal["audio", "video"]


class Renegotiate(ServerMessage, tag="renegotiate"):
    """An SFU offer for this device's one connection (11.15.2); reply ``renegotiate_answer``
    with the same ``revision``. ``streams``: everything the connection receives from now on;
    sections not listed are no longer used."""

    call_id: str
    revision: int
    sdp: str
    streams: list[Stream]


class MediaKey(ServerMessage, tag="media_key"):
    """A media key of ``participant`` (the sender), sealed to you: ``kid`` names it in frames."""

    call_id: str
    participant: str
    kid: int
    blob: str


class PeerMediaKeyRequest(ServerMessage, tag="media_key_request"):
    """``participant`` has no usable key of yours: answer with a ``media_keys`` to it alone,
    carrying your current key."""

    call_id: str
    participant: str


class Pong(ServerMessage, tag="pong"):
    pass


class Reconnect(ServerMessage, tag="reconnect"):
    """This server is draining (shutting down): connect again to the same address, where another
    server answers, and resume with ``resume_token``; your calls go on. Connect before closing
    this connection: the server closes it (4003) once the new one has signed in, or after
    ``within_s`` seconds."""

    resume_token: str
    resume_window_s: float
    within_s: float


class Error(ServerMessage, tag="error"):
    code: str
    detail: str
    call_id: str | None = None
    ref: str | None = None


ServerMessages = (
    Welcome
    | Ringing
    | Incoming
    | Accepted
    | Relayed
    | Ended
    | PeerDescription
    | PeerIce
    | PeerReconnecting
    | PeerResumed
    | PeerMute
    | Joined
    | Participants
    | ActiveSpeaker
    | PublishAnswer
    | SubscribeOffer
    | Renegotiate
    | Unpublished
    | MediaKey
    | PeerMediaKeyRequest
    | Pong
    | Reconnect
    | Error
)


def refusal(message: ClientMessage, code: str, detail: str, call_id: str | None = None) -> Error:
    """The ``error`` that refuses ``message``: it names the message's call (an error about a call
    always carries its ``call_id``) and echoes the ``ref`` of an ``invite`` or ``group_invite``."""
    about = call_id if call_id is not None else getattr(message, "call_id", None)
    return Error(code=code, detail=detail, call_id=about, ref=getattr(message, "ref", None))
