// TypeScript declarations of the Callbook JavaScript SDK (callbook.js; docs/sdk-js.md).
// The wire messages are in protocol.d.ts, generated from docs/asyncapi.json.

import type {
  Accepted,
  EndReason,
  Error as ErrorMessage,
  Incoming,
  Participant,
  Person,
  ServerMessage,
  Welcome,
} from "./protocol";

export * from "./protocol";

/** A failed REST request: the problem's stable ``code`` and its human ``detail``. */
export class ApiError extends Error {
  status: number;
  code: string;
  detail: string;
  retryAfter: number | null;
}

/** This device's keys and ids, as kept in IndexedDB. */
export interface Identity {
  keyPair: CryptoKeyPair;
  mediaKeyPair: CryptoKeyPair | null;
  mediaKeyPublished?: boolean;
  accountId: string;
  deviceId: string;
  handle: string;
}

/** ``GET /v1/handles/{handle}``: a person's card. */
export interface Card {
  account_id: string;
  handle: string;
  display_name: string | null;
}

export interface Contact {
  account_id: string;
  handle: string | null;
  display_name: string | null;
  nickname: string | null;
  added_at?: string;
}

export interface Account {
  id: string;
  handle: string;
  display_name: string | null;
  [field: string]: unknown;
}

export interface Enrolled {
  identity: Identity;
  account: Account;
  /** Shown once: the only way back into the account without a device. */
  recoveryCode: string;
  /** Whether the key was kept in this browser (false: private browsing, storage refused). */
  saved: boolean;
}

/** The REST API (docs/openapi.json): signs in with the device key, renews its token. */
export class Api extends EventTarget {
  constructor(base?: string);
  identity: Identity | null;
  token: string | null;
  use(identity: Identity | null): void;
  forget(): void;
  signIn(): Promise<string>;
  ensureToken(minValidS?: number): Promise<string>;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  me(): Promise<Account>;
  lookup(handle: string): Promise<Card>;
  contacts(): Promise<Contact[]>;
  addContact(handle: string, nickname?: string | null): Promise<Contact>;
  removeContact(accountId: string): Promise<null>;
  turn(): Promise<{ ice_servers: RTCIceServer[]; ttl: number; sfu?: boolean }>;
}

export function signinMessage(accountId: string, deviceId: string, nonce: string): string;

export type LineState = "connecting" | "online" | "reconnecting" | "replaced" | "offline";

/** The call WebSocket: signs in, keeps alive, resumes after drops, follows a draining server. */
export class Line extends EventTarget {
  constructor(api: Api, url?: string);
  state: LineState;
  welcome: Welcome | null;
  resumeToken: string | null;
  start(): void;
  stop(): void;
  /** Send a client message; while reconnecting it waits (in order) for the resumed session. */
  send(message: { type: string; [field: string]: unknown }): boolean;
  probe(): void;
}

/** getUserMedia constraints for the devices a person chose. */
export interface Constraints {
  audio?: () => MediaTrackConstraints | boolean;
  video?: (width: number, height: number) => MediaTrackConstraints | boolean;
}

/** A call's screen share: a second video track beside the camera (fires ``change``). */
export class ScreenShare extends EventTarget {
  readonly sharing: boolean;
  /** The call sends video now and the browser can capture a screen. */
  readonly possible: boolean;
  /** The screen's track while sharing. */
  readonly track: MediaStreamTrack | null;
  toggle(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether a stream carries a video track with frames flowing now. */
export function showsVideo(stream: MediaStream | null | undefined): boolean;

export interface SessionOptions {
  constraints?: Constraints;
  /**
   * Media through the SFU on one connection per call (default true): it publishes and receives
   * everyone, renegotiated by the SFU (``renegotiate``). false: one receiving connection per
   * sender (``subscribe_offer``), the way of servers from before. A server that does not bundle
   * gets the old way either way.
   */
  bundle?: boolean;
}

/** One track received through the SFU, and who sends it. */
export interface ReceivedTrack {
  participant: string;
  source: "camera" | "screen";
  kind: "audio" | "video";
  /** Its m-section on the one connection (with bundle). */
  mid?: string;
  receiver: RTCRtpReceiver;
  /** The connection carrying it: ``uplink`` with bundle, else its sender's own. */
  pc: RTCPeerConnection;
}

export interface SfuTrackDetail {
  participant: string;
  track: MediaStreamTrack;
  stream: MediaStream;
  source: "camera" | "screen";
}

/**
 * A call's media through the SFU (sfu.js, bundle.js): publishes this device's tracks and
 * receives the others'. Events: ``track`` (SfuTrackDetail), ``closed`` ({participant, source}),
 * ``state`` (the publishing connection's state changed).
 */
export class SfuMedia extends EventTarget {
  /** Whether it asks the SFU for one connection (``publish {bundle: true}``). */
  bundle: boolean;
  /** How the server sends the others: "bundle" (``renegotiate``), "separate"
   * (``subscribe_offer``), or null before either came. */
  mode: "bundle" | "separate" | null;
  /** The connection that publishes (and with bundle receives everything). */
  uplink: RTCPeerConnection | null;
  /** Our shared screen's own connection, while we share. */
  screenUplink: RTCPeerConnection | null;
  closed: boolean;
  /** Everything received now, one entry per track. */
  receiving(): ReceivedTrack[];
  /** The connection(s) carrying a participant's media (of one source if given). */
  connectionsOf(participant: string, source?: "camera" | "screen" | null): RTCPeerConnection[];
  /** Every open connection to the SFU: one with bundle (two while sharing a screen). */
  connections(): RTCPeerConnection[];
  close(): void;
}

export interface EndedDetail {
  reason: EndReason | "declined_by_me" | "gone" | "error" | "media" | "failed" | "no_route" | "no_relay";
  error: unknown;
}

/** What 1:1 and group calls share: answering, declining, hanging up, mute, the end. */
export class Session extends EventTarget {
  api: Api;
  line: Line;
  direction: "outgoing" | "incoming";
  media: "audio" | "video";
  callId: string | null;
  state: string;
  localStream: MediaStream | null;
  sendsVideo: boolean;
  muted: boolean;
  cameraOff: boolean;
  /** Our shared screen (``toggleScreen`` starts or stops it). */
  screen: ScreenShare;
  endReason: EndedDetail["reason"] | null;
  endError: unknown;
  endedBySelf: boolean;
  /** Media through the SFU on one connection (SessionOptions.bundle). */
  bundle: boolean;
  readonly active: boolean;
  /** Ringing on this device, answered or not yet. */
  readonly ringingHere: boolean;
  decline(busy?: boolean): void;
  hangup(): void;
  toggleMute(): void;
  toggleCamera(): void;
  toggleScreen(): Promise<void>;
  /** A server message for this call (Callbook routes them; handled strictly in order). */
  receive(message: ServerMessage): void;
  lost(): void;
}

export type CallState =
  | "dialing"
  | "ringing"
  | "incoming"
  | "answering"
  | "connecting"
  | "connected"
  | "reconnecting"
  | "ended";

/** A 1:1 call: peer to peer, through TURN, or relayed by the server's SFU. */
export class Call extends Session {
  state: CallState;
  peer: (Person & { label?: string | null }) | null;
  readonly label: string;
  busy: boolean;
  role: Accepted["role"];
  remoteStream: MediaStream;
  /** The other side's shared screen (empty while they share none). */
  screenStream: MediaStream;
  pc: RTCPeerConnection | null;
  /** The SFU's media when the server relays this call through it (``accepted.sfu``). */
  sfu: SfuMedia | null;
  peerMuted: boolean;
  /** The other device said it shares its screen. */
  peerSharing: boolean;
  peerCameraOff: boolean;
  peerReconnecting: boolean;
  connectedAt: number;
  target?: { account_id?: string | null; handle?: string | null };
  dial(target: { handle?: string; account_id?: string }): Promise<void>;
  answer(withVideo: boolean): Promise<void>;
  duration(): number;
  snapshot(): Record<string, unknown>;
}

export type GroupState = "starting" | "incoming" | "joining" | "joined" | "ended";

/** Whom the host of a group call rang, and where each stands (worked out on this device). */
export class Invitees {
  states(now: number): { handle: string; state: "ringing" | "no_answer" | "in_call" | "left" }[];
  readonly size: number;
}

/** A group call through the SFU, end-to-end encrypted. */
export class GroupCall extends Session {
  state: GroupState;
  host: Person | null;
  me: string | null;
  participants: Participant[];
  /** participant id → what we receive from them */
  streams: Map<string, MediaStream>;
  /** participant id → the screen they share */
  screens: Map<string, MediaStream>;
  speaker: string | null;
  invitees: Invitees;
  /** The call's media through the SFU, once joined. */
  sfu: SfuMedia | null;
  start(handles: string[]): Promise<void>;
  accept(): Promise<void>;
  /** Host only: ring more people into the running call. */
  add(handles: string[]): void;
  participant(id: string): Participant | null;
  duration(): number;
}

export interface CallbookOptions extends SessionOptions {
  /** The server's origin; "" (default) is this page's own. */
  base?: string;
  /** The call WebSocket's URL, if not ``base`` + "/v1/ws". */
  url?: string;
}

export interface CallbookEventMap {
  incoming: CustomEvent<Call | GroupCall>;
  unrouted: CustomEvent<ServerMessage>;
}

/** One person's Callbook on this device: key, address book, WebSocket, and calls. */
export class Callbook extends EventTarget {
  constructor(options?: CallbookOptions);
  api: Api;
  line: Line;
  identity: Identity | null;
  calls: Map<string, Call | GroupCall>;
  static supported(): Promise<boolean>;
  restore(): Promise<Identity | null>;
  use(identity: Identity): void;
  signUp(
    handle: string,
    options?: { displayName?: string | null; deviceName?: string; save?: boolean },
  ): Promise<Enrolled>;
  recover(
    handle: string,
    recoveryCode: string,
    options?: { deviceName?: string; revokeOthers?: boolean; save?: boolean },
  ): Promise<Enrolled>;
  signIn(): Promise<string>;
  signOut(options?: { forget?: boolean }): Promise<void>;
  me(): Promise<Account>;
  lookup(handle: string): Promise<Card>;
  contacts(): Promise<Contact[]>;
  addContact(handle: string, nickname?: string | null): Promise<Contact>;
  removeContact(accountId: string): Promise<null>;
  connect(): void;
  call(
    target: { handle?: string; account_id?: string },
    options?: { media?: "audio" | "video"; peer?: Person & { label?: string | null } },
  ): Call;
  group(handles: string[], options?: { media?: "audio" | "video" }): GroupCall;
  rejoin(kept: Record<string, unknown>): Call;
  release(call: Call | GroupCall): void;
  endAll(lost?: boolean): void;
  addEventListener<K extends keyof CallbookEventMap>(
    type: K,
    listener: (event: CallbookEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

export type { ErrorMessage, Incoming };
