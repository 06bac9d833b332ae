// The call WebSocket's messages (docs/protocol.md §11), as docs/asyncapi.json defines them.
// Generated: python -m signaling.web.typings > signaling/web/sdk/protocol.d.ts — do not edit.

/** First message when the token is not in ``Sec-WebSocket-Protocol``; optionally resumes. */
export interface Auth {
  type: "auth";
  token: string;
  resume?: string | null;
}

/** Call a person by handle or account id; exactly one of the two. */
export interface Invite {
  type: "invite";
  handle?: string | null;
  account_id?: string | null;
  media?: "audio" | "video";
  ref?: string | null;
}

export interface Accept {
  type: "accept";
  /** Call id */
  call_id: string;
}

export interface Decline {
  type: "decline";
  /** Call id */
  call_id: string;
  busy?: boolean;
}

/** Hang up a connected call, or cancel one still ringing. */
export interface Hangup {
  type: "hangup";
  /** Call id */
  call_id: string;
}

/**
 * The peer-to-peer path of a connected 1:1 call failed (ICE ``failed``, or no media a few
 * seconds after ``accepted``): move the call to a relay without ending it.
 */
export interface RelayFallback {
  type: "relay_fallback";
  /** Call id */
  call_id: string;
}

/**
 * An SDP offer or answer for the peer; ``restart`` marks an ICE-restart offer, and the
 * answer to one (so that a caller that offered again after ``relayed`` can tell it apart).
 */
export interface Description {
  type: "sdp";
  /** Call id */
  call_id: string;
  kind: "answer" | "offer";
  sdp: string;
  restart?: boolean;
}

/**
 * A trickled ICE candidate for the peer; an empty ``candidate`` ends gathering.
 *
 * Trickling is optional: candidates may stay in the SDP instead. Send both ``sdp_mid`` and
 * ``sdp_mline_index``: the peers' WebRTC stacks differ in which one they need.
 */
export interface Ice {
  type: "ice";
  /** Call id */
  call_id: string;
  candidate: string;
  sdp_mid?: string | null;
  sdp_mline_index?: number | null;
}

/** Start a group call and join it; every listed handle rings like a 1:1 call. */
export interface GroupInvite {
  type: "group_invite";
  handles: string[];
  media?: "audio" | "video";
  ref?: string | null;
}

/** The host rings more people into its running group call (like ``group_invite``'s). */
export interface GroupAdd {
  type: "group_add";
  /** Call id */
  call_id: string;
  handles: string[];
}

/**
 * This device's media into the call's SFU: an SDP offer with its candidates gathered.
 *
 * ``source: "screen"`` publishes its shared screen instead: a second connection whose offer
 * has exactly one video section, sent beside the camera's (11.15.1).
 */
export interface Publish {
  type: "publish";
  /** Call id */
  call_id: string;
  sdp: string;
  source?: "camera" | "screen";
  bundle?: boolean;
}

/** Stop sending ``source`` through the SFU: ``screen`` ends this device's screen share. */
export interface Unpublish {
  type: "unpublish";
  /** Call id */
  call_id: string;
  source?: "screen";
}

/** The answer to a ``subscribe_offer``: start receiving that participant's media. */
export interface SubscribeAnswer {
  type: "subscribe_answer";
  /** Call id */
  call_id: string;
  subscription: string;
  sdp: string;
}

/** The answer to ``renegotiate`` offer ``revision`` of this device's one connection. */
export interface RenegotiateAnswer {
  type: "renegotiate_answer";
  /** Call id */
  call_id: string;
  revision: number;
  sdp: string;
}

/**
 * The largest picture this device wants of one participant's ``source`` (its tile size,
 * a pinned speaker, a hidden tab): the SFU then forwards that participant's simulcast video in
 * the highest layer no taller than ``max_height`` pixels; 0 pauses the video, ``null`` lifts
 * the limit (the default). A single-layer publisher's video is forwarded as it is.
 */
export interface View {
  type: "view";
  /** Call id */
  call_id: string;
  /** A participant id in a call */
  participant: string;
  source?: "camera" | "screen";
  max_height?: number | null;
}

/**
 * What this device is sending in a call; shown to the other participants (group) or
 * passed to the other device as ``peer_mute`` (1:1, once connected).
 */
export interface Mute {
  type: "mute";
  /** Call id */
  call_id: string;
  audio_muted: boolean;
  video_muted: boolean;
  screen?: boolean;
}

/** Application-level keepalive for clients that cannot see WebSocket pings. */
export interface Ping {
  type: "ping";
}

/**
 * This device's view of a connected call's media, from its WebRTC stats, for operators.
 *
 * At most one per 2 s per device counts; more are dropped silently. Send one every ~5 s.
 */
export interface Quality {
  type: "quality";
  /** Call id */
  call_id: string;
  rtt_ms: number;
  jitter_ms: number;
  /** Fraction of packets lost */
  loss: number;
  bitrate_kbps: number;
  relayed?: boolean | null;
}

/**
 * Your new media key, sealed to each named participant of an SFU call (docs/e2ee.md).
 *
 * Each named participant still in the call gets ``media_key``; others are skipped silently.
 */
export interface MediaKeys {
  type: "media_keys";
  /** Call id */
  call_id: string;
  /** The sender's key id */
  kid: number;
  keys: MediaKeyFor[];
}

/** One recipient's copy of the sender's media key. */
export interface MediaKeyFor {
  /** A participant id in a call */
  participant: string;
  /** base64url, unpadded */
  blob: string;
}

/**
 * Ask ``participant`` for its current media key (frames arrived that no key decrypts).
 *
 * At most one per second per (you, ``participant``) is passed on; more are dropped silently.
 */
export interface MediaKeyRequest {
  type: "media_key_request";
  /** Call id */
  call_id: string;
  /** A participant id in a call */
  participant: string;
}

export interface Welcome {
  type: "welcome";
  account_id: string;
  device_id: string;
  resume_token: string;
  resume_window_s: number;
  protocol?: number;
  resumed?: boolean;
}

/** To the caller: the call exists and is ringing (sent the same way whoever the callee is). */
export interface Ringing {
  type: "ringing";
  call_id: string;
  ref?: string | null;
}

/**
 * To every online device of the callee; ``busy`` means the device is in another call.
 *
 * ``group`` marks an invitation to a group call: accepting joins it.
 */
export interface Incoming {
  type: "incoming";
  call_id: string;
  caller: Person;
  media: "audio" | "video";
  busy?: boolean;
  group?: boolean;
}

export interface Person {
  account_id: string;
  handle: string | null;
  display_name: string | null;
}

/**
 * To both devices of a call that was answered: negotiate media now.
 *
 * The caller sends the offer. With ``relay_only`` both sides must set
 * ``iceTransportPolicy: relay``: the server forwards relay candidates only. With ``sfu``
 * there is no peer-to-peer offer at all: each side publishes to the SFU and receives the other
 * through it (``publish`` / ``subscribe_offer``), so neither sees the other's address; then
 * ``participant`` is this device's id in the SFU room and ``participants`` lists both devices
 * with their keys, for end-to-end encrypted media (``media_keys``).
 */
export interface Accepted {
  type: "accepted";
  call_id: string;
  role: "callee" | "caller";
  relay_only: boolean;
  peer: Person;
  sfu?: boolean;
  participant?: string | null;
  participants?: Participant[] | null;
}

export interface Participant {
  participant: string;
  person: Person;
  audio_muted?: boolean;
  video_muted?: boolean;
  screen?: boolean;
  connected?: boolean;
  device_key?: string | null;
  media_key?: string | null;
  media_key_signature?: string | null;
}

/**
 * To both devices of a 1:1 call that moves to a relay (after ``relay_fallback``): the call
 * is relay-only from now on. Without ``sfu``: drop the peer connection's path and negotiate
 * again through TURN (``iceTransportPolicy: relay``; the caller offers, with ``restart``).
 * With ``sfu``: stop sending peer-to-peer media and publish to the SFU, introduced by
 * ``participant`` and ``participants`` as ``accepted`` introduces a call through the SFU.
 */
export interface Relayed {
  type: "relayed";
  call_id: string;
  sfu?: boolean;
  participant?: string | null;
  participants?: Participant[] | null;
}

export interface Ended {
  type: "ended";
  call_id: string;
  reason: "answered_elsewhere" | "busy" | "cancelled" | "declined" | "declined_elsewhere" | "glare" | "hangup" | "media_failed" | "missed" | "no_answer" | "operator" | "peer_lost";
}

export interface PeerDescription {
  type: "sdp";
  call_id: string;
  kind: "answer" | "offer";
  sdp: string;
  restart?: boolean;
}

export interface PeerIce {
  type: "ice";
  call_id: string;
  candidate: string;
  sdp_mid?: string | null;
  sdp_mline_index?: number | null;
}

/** The other device lost its connection; it may resume within the window. */
export interface PeerReconnecting {
  type: "peer_reconnecting";
  call_id: string;
}

export interface PeerResumed {
  type: "peer_resumed";
  call_id: string;
}

/**
 * In a 1:1 call: what the other device now sends, as its ``mute`` said (a group call
 * shows the same in ``participants``).
 */
export interface PeerMute {
  type: "peer_mute";
  call_id: string;
  audio_muted: boolean;
  video_muted: boolean;
  screen?: boolean;
}

/** You are in the group call as ``participant``: publish your media now. */
export interface Joined {
  type: "joined";
  call_id: string;
  participant: string;
  media: "audio" | "video";
  host: Person;
  ref?: string | null;
  ring_timeout_s?: number | null;
}

/**
 * Everyone in a group call, sent to all of them whenever it changes. Each entry carries
 * the device's keys: check ``media_key_signature`` with ``device_key`` (docs/e2ee.md).
 */
export interface Participants {
  type: "participants";
  call_id: string;
  participants: Participant[];
}

/** Who is speaking now (at most about once a second); null when nobody is. */
export interface ActiveSpeaker {
  type: "active_speaker";
  call_id: string;
  participant: string | null;
}

export interface PublishAnswer {
  type: "publish_answer";
  call_id: string;
  sdp: string;
  source?: "camera" | "screen";
}

/**
 * The SFU offers one participant's media; reply with ``subscribe_answer``.
 *
 * ``participant`` is an id that ``participants`` introduced, or in a 1:1 call through the SFU
 * the other device's id from ``accepted.participants``.
 */
export interface SubscribeOffer {
  type: "subscribe_offer";
  call_id: string;
  subscription: string;
  participant: string;
  sdp: string;
  source?: "camera" | "screen";
}

/**
 * An SFU offer for this device's one connection (11.15.2); reply ``renegotiate_answer``
 * with the same ``revision``. ``streams``: everything the connection receives from now on;
 * sections not listed are no longer used.
 */
export interface Renegotiate {
  type: "renegotiate";
  call_id: string;
  revision: number;
  sdp: string;
  streams: Stream[];
}

/**
 * What one m-section of a bundled connection carries: decrypt it with ``participant``'s
 * key.
 */
export interface Stream {
  mid: string;
  participant: string;
  source: "camera" | "screen";
  kind: "audio" | "video";
}

/** ``participant`` stopped sending ``source`` (its screen): close that subscription. */
export interface Unpublished {
  type: "unpublished";
  call_id: string;
  participant: string;
  source: "camera" | "screen";
}

/** A media key of ``participant`` (the sender), sealed to you: ``kid`` names it in frames. */
export interface MediaKey {
  type: "media_key";
  call_id: string;
  participant: string;
  kid: number;
  blob: string;
}

/**
 * ``participant`` has no usable key of yours: answer with a ``media_keys`` to it alone,
 * carrying your current key.
 */
export interface PeerMediaKeyRequest {
  type: "media_key_request";
  call_id: string;
  participant: string;
}

export interface Pong {
  type: "pong";
}

/**
 * This server is draining (shutting down): connect again to the same address, where another
 * server answers, and resume with ``resume_token``; your calls go on. Connect before closing
 * this connection: the server closes it (4003) once the new one has signed in, or after
 * ``within_s`` seconds.
 */
export interface Reconnect {
  type: "reconnect";
  resume_token: string;
  resume_window_s: number;
  within_s: number;
}

export interface Error {
  type: "error";
  code: string;
  detail: string;
  call_id?: string | null;
  ref?: string | null;
}

/** What a client sends. */
export type ClientMessage =
  | Auth
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
  | MediaKeyRequest;

/** What the server sends. */
export type ServerMessage =
  | Welcome
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
  | Error;

/** Why a call ended (``ended.reason``). */
export type EndReason = "hangup" | "cancelled" | "declined" | "busy" | "no_answer" | "missed" | "answered_elsewhere" | "declined_elsewhere" | "peer_lost" | "glare" | "media_failed" | "operator";

/** An ``error``'s stable code. */
export type ErrorCode = "forbidden_origin" | "subprotocol_required" | "auth_timeout" | "auth_required" | "token_invalid" | "token_expired" | "device_revoked" | "draining" | "unavailable" | "already_authenticated" | "invalid_message" | "rate_limited" | "invalid_handle" | "invalid_target" | "account_suspended" | "unknown_call" | "not_ringing" | "not_in_call" | "call_ended" | "not_lost" | "unexpected_message" | "call_full" | "not_host" | "already_published" | "not_published" | "use_sfu" | "invalid_sdp" | "media_key_required" | "stale_offer" | "unknown_subscription";
