"""One routing interface between the call service and the other signaling nodes.

``CallService`` runs every call on one node, the call's *owner* (the node that placed it, or the
node that took it over when the owner died). The devices in a call may be connected to other
nodes. Everything that crosses that line goes through a ``Router``:

- presence: which node each connected device is on (``register``/``lookup``/``online``);
- ``deliver``: a server message for a device on whatever node it is connected to;
- ``send``: an envelope to one node (a device's message forwarded to the call's owner);
- ``broadcast``: an envelope to every other node (a device came online, dropped, resumed);
- node liveness: the router tells its ``Inbox`` when another node has died.

``routing_local.LocalRouter`` is the single-node implementation (everything in this process);
``routing_redis.RedisRouter`` the cluster one (presence and heartbeats in the store, envelopes by
pub/sub). Both pass ``tests/test_routing.py``. Which one runs is chosen once, at start-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import msgspec

from directory.batch import Batch
from signaling.calls.machine import DeviceRef
from signaling.protocol import messages as m


class Envelope(msgspec.Struct, tag_field="kind", kw_only=True):
    """What travels between nodes. ``origin`` is the sending node's id."""

    origin: str
    account_id: str
    device_id: str

    @property
    def device(self) -> DeviceRef:
        return DeviceRef(self.account_id, self.device_id)


class Deliver(Envelope, tag="deliver"):
    """A server message for a device connected to the receiving node.

    ``call_id``/``owner`` tell the device's node which node runs the call the message is about,
    so that the device's next message about it goes straight there.
    """

    message: m.ServerMessages
    call_id: str | None = None
    owner: str | None = None
    #: Passed on by a node the device had left (the sender's idea of where it was is cached):
    #: passed on at most once.
    rerouted: bool = False


class Forward(Envelope, tag="forward"):
    """A device's message about a call, for the node that owns the call."""

    message: m.ClientMessages
    #: Sent by a node on the device's behalf (answering elsewhere hangs up the call it talked
    #: in): a refusal is moot and not told to the device, which sent nothing.
    on_behalf: bool = False


#: Reads the devices online from a batch's results (``Router.stage_online``).
Online = Callable[[list[object]], Awaitable[frozenset[DeviceRef]]]

DeviceEventKind = Literal["online", "lost", "gone", "resumed", "revoked", "revoke_account"]


class DeviceEvent(Envelope, tag="device"):
    """Broadcast: something happened to a device; owners of its calls apply it."""

    event: DeviceEventKind
    busy: bool = False
    #: When it happened (the store's clock): a resume window counts from here.
    at: float = 0.0


class Handover(Envelope, tag="handover"):
    """To the node a device was on: the device is now connected to ``origin``.

    The old node closes its connection (replaced) and passes on what it queued for it.
    """


class Adopt(Envelope, tag="adopt"):
    """To the node a draining owner gave a call to: the call is yours in the store now; run it.

    Names no device (``account_id`` and ``device_id`` are empty).
    """

    call_id: str


class Supersede(Envelope, tag="supersede"):
    """To the owner of a ringing call: it crosses a call with a smaller id placed on
    ``origin`` (glare), so it ends as it would on one node. No device: ``account_id`` and
    ``device_id`` are empty."""

    call_id: str


class Moved(Envelope, tag="moved"):
    """Broadcast by a draining node: ``call_id`` is run by ``owner`` now; nodes whose devices
    send messages about it send them there. Names no device."""

    call_id: str
    owner: str


OperatorAction = Literal["reveal", "end", "disconnect"]
Role = Literal["caller", "callee", "host", "participant"]


class Party(msgspec.Struct, frozen=True, kw_only=True):
    """Who is in a call, for an operator's ``reveal`` (``participant`` is the call's pseudonym
    on the node that runs it)."""

    participant: str
    role: Role
    account_id: str
    device_id: str | None


class OperatorRequest(Envelope, tag="operator"):
    """An operator on ``origin`` acts on a call this node runs (``call_id``) or on a device
    connected here (``account_id``/``device_id``); the answer goes back as ``OperatorReply``."""

    action: OperatorAction
    request_id: str
    call_id: str = ""


class OperatorReply(Envelope, tag="operator_reply"):
    """Whether the call or device was found (and acted on), and for ``reveal`` who is in it."""

    request_id: str
    found: bool
    parties: list[Party] = msgspec.field(default_factory=list)


class PresenceBack(Envelope, tag="presence_back"):
    """Broadcast by a node that has written its devices' presence again after a store outage
    (it may have expired meanwhile): calls ringing on the receiving node look for their callees'
    devices again. Names no device."""


Envelopes = (
    Deliver
    | Forward
    | DeviceEvent
    | Handover
    | Adopt
    | Moved
    | Supersede
    | OperatorRequest
    | OperatorReply
    | PresenceBack
)


class Location(msgspec.Struct, frozen=True, kw_only=True):
    """A device's presence entry: the node it is on, whether its socket is open right now, and
    the digest of its resume token (so another node can accept the resume)."""

    node: str
    connected: bool
    resume: str = ""
    at: float = 0.0


def resume_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class Inbox(Protocol):
    """The receiving side: what a router calls when something arrives for this node."""

    async def on_envelope(self, envelope: Envelopes) -> None: ...

    async def on_node_dead(self, node: str, last_seen: float) -> None:
        """Another node's heartbeat is older than ``keys.NODE_DEAD_AFTER_S``: it died."""

    async def on_presence_settling(self) -> None:
        """The store, or another node, is just back from an outage: presence entries that had
        expired meanwhile are being written again, so a call placed since may have found its
        callee offline. Called at every heartbeat until every node has had time to rewrite its
        presence."""


class Router(Protocol):
    @property
    def node_id(self) -> str: ...

    async def start(self, inbox: Inbox) -> None: ...

    @property
    def listening(self) -> bool:
        """Envelopes for this node reach it (its pub/sub subscription is up): part of ready."""

    async def close(self) -> None:
        """Stop listening; presence entries of this node are removed."""

    def register(self, device: DeviceRef, location: Location) -> Awaitable[None]:
        """Record (or update) a device connected to, or resumable on, this node.

        Presence writes take effect in the order they are called; await the result to know the
        write is done.
        """

    def unregister(self, device: DeviceRef) -> Awaitable[None]:
        """The device is no longer on this node (gone, expired or moved); an entry another node
        wrote meanwhile stays."""

    async def lookup(self, device: DeviceRef, *, live_only: bool = True) -> Location | None:
        """Where the device is, if it is on a live node (or on any, to check a resume token)."""

    def stage_online(self, batch: Batch, account_id: str) -> Online:
        """``online``'s read on a batch shared with other reads (one round trip); what it
        returns finds the devices in the batch's results."""

    async def online(self, account_id: str) -> frozenset[DeviceRef]:
        """The account's devices connected right now, on any live node."""

    def deliver(self, device: DeviceRef, envelope: Deliver) -> None:
        """Queue ``envelope`` for the device's node; in order per sending node; a device found
        nowhere gets nothing (exactly like an offline device)."""

    def send(self, node: str, envelope: Envelopes) -> None:
        """Queue an envelope for one node (in order with ``deliver``)."""

    def broadcast(self, envelope: Envelopes) -> None:
        """Queue an envelope for every other node."""

    async def live_nodes(self) -> dict[str, float]:
        """Node id -> last heartbeat, for the nodes counted alive."""

    async def set_draining(self) -> None:
        """Say in the registry that this node is draining: no other node hands it calls.
        Done (awaited) before this node reads ``successors``, so that of two nodes that begin
        to drain at once, at least one sees the other draining, and no call goes back."""

    async def successors(self) -> list[str]:
        """Nodes this draining node may hand calls to: alive (a recent heartbeat) and not
        draining, in the same order on every node."""

    async def flush(self) -> None:
        """Wait until everything queued so far has left this node (tests, shutdown)."""
