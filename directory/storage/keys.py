"""Every Redis key the project uses, and every TTL, in one place.

Keys of one account carry the account's hash tag (``{a:<id>}``) so that one account's multi-key
changes run as a single MULTI/EXEC on one Redis Cluster slot. Keys that are looked up by something
other than the account id (a handle, a sign-in nonce) carry their own tag; code that touches both
orders its writes so that a crash in between never leaves a dangling reference (see
``directory/accounts.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

PREFIX = "cb"

NONCE_TTL_S = 60
DEFAULT_HANDLE_QUARANTINE_S = 30 * 24 * 3600
ACCESS_TOKEN_TTL_S = 10 * 60
SIGNING_KEY_ROTATION_S = 24 * 3600
RATE_LIMIT_IDLE_TTL_S = 3600
#: A client puzzle (signaling/puzzle.py) is valid this long after it is issued.
PUZZLE_TTL_S = 120
#: The window in which an account's handle changes are counted.
RENAMES_WINDOW_S = 24 * 3600
MISSED_CALLS_TTL_S = 30 * 24 * 3600
DEFAULT_REPORT_RETENTION_S = 180 * 24 * 3600
DEFAULT_AUDIT_RETENTION_S = 365 * 24 * 3600
#: How long a lifecycle event waits in the webhook stream for delivery before it is trimmed.
DEFAULT_WEBHOOK_RETENTION_S = 3 * 24 * 3600
#: The most lifecycle events the webhook stream keeps, delivered or not (about 300 bytes each).
WEBHOOK_EVENTS_MAX = 1_000_000
#: The webhook deliverer's lease: a node that stops renewing it is taken over after this long.
WEBHOOK_LEASE_TTL_S = 15
#: Dead letters kept (the newest ones); also trimmed to the webhook retention.
WEBHOOK_DEAD_LETTERS_MAX = 10_000

#: The value a handle key holds while the handle is quarantined; never a valid account id.
QUARANTINED = "-"


def account_tag(account_id: str) -> str:
    return "{a:" + account_id + "}"


def account(account_id: str) -> str:
    """Hash: handle, display_name, created_day, settings, recovery code hash."""
    return f"{PREFIX}:{account_tag(account_id)}:account"


def devices(account_id: str) -> str:
    """Hash: device id -> JSON device record (public key, name, days)."""
    return f"{PREFIX}:{account_tag(account_id)}:devices"


def contacts(account_id: str) -> str:
    """Hash: contact account id -> JSON contact record (nickname, added day)."""
    return f"{PREFIX}:{account_tag(account_id)}:contacts"


def contact_of(account_id: str) -> str:
    """Set: account ids whose contacts list holds this account (reverse index for erase)."""
    return f"{PREFIX}:{account_tag(account_id)}:contact_of"


def blocks(account_id: str) -> str:
    """Hash: blocked account id -> day blocked."""
    return f"{PREFIX}:{account_tag(account_id)}:blocks"


def blocked_by(account_id: str) -> str:
    """Set: account ids that block this account (reverse index for erase)."""
    return f"{PREFIX}:{account_tag(account_id)}:blocked_by"


def lookup_bucket(account_id: str) -> str:
    """Hash: token bucket limiting handle lookups of this account."""
    return f"{PREFIX}:{account_tag(account_id)}:rl:lookup"


def young_lookup_bucket(account_id: str) -> str:
    """Hash: the smaller lookup bucket of an account created today or yesterday."""
    return f"{PREFIX}:{account_tag(account_id)}:rl:lookup_young"


def young_lookups_bucket() -> str:
    """Hash: the one store-wide bucket all young accounts' lookups draw on; names nobody."""
    return f"{PREFIX}:{{rl:young}}:lookups"


def renames(account_id: str) -> str:
    """String, RENAMES_WINDOW_S from the first: this account's handle changes in the window."""
    return f"{PREFIX}:{account_tag(account_id)}:renames"


def invite_bucket(account_id: str) -> str:
    """Hash: token bucket limiting the calls this account places."""
    return f"{PREFIX}:{account_tag(account_id)}:rl:invite"


def missed_calls(account_id: str) -> str:
    """Sorted set, MISSED_CALLS_TTL_S: missed calls (JSON: caller id and handle), by time."""
    return f"{PREFIX}:{account_tag(account_id)}:missed"


def missed_by(account_id: str) -> str:
    """Set: accounts whose missed-call list names this account as caller (for erase)."""
    return f"{PREFIX}:{account_tag(account_id)}:missed_by"


def report_bucket(account_id: str) -> str:
    """Hash: token bucket limiting the abuse reports this account files."""
    return f"{PREFIX}:{account_tag(account_id)}:rl:report"


def reports_filed(account_id: str) -> str:
    """Set, report retention: ids of the reports this account filed (export, anonymise)."""
    return f"{PREFIX}:{account_tag(account_id)}:reports_filed"


def reports_about(account_id: str) -> str:
    """Set, report retention: ids of the reports naming this account (for erase)."""
    return f"{PREFIX}:{account_tag(account_id)}:reports_about"


def notices(account_id: str) -> str:
    """Sorted set, report retention: statements of reasons addressed to this account, by time."""
    return f"{PREFIX}:{account_tag(account_id)}:notices"


def push_tokens(account_id: str) -> str:
    """Hash: device id -> JSON push registration (provider, token)."""
    return f"{PREFIX}:{account_tag(account_id)}:push"


def handle_preimage(normalized_handle: str) -> str:
    """What the keyed handle digest is taken of (``Store.handle_digest``): the unkeyed digest the
    keys were named by before, so that the start-up migration can re-key a quarantined handle
    whose name nobody knows any more (``directory/migrations.py``)."""
    return hashlib.sha256(normalized_handle.encode()).hexdigest()[:32]


def handle_key(digest: str) -> str:
    """String: account id owning the handle, or QUARANTINED with a TTL. ``digest`` is the keyed
    digest (``Store.handle_digest``): without the deployment secret no key name can be checked
    against a guessed handle, and once an account is erased no key spells out its handle."""
    return f"{PREFIX}:{{hk:{digest}}}:handle"


def recovery_bucket_key(digest: str) -> str:
    """Hash: token bucket limiting recovery attempts for a handle, whether it exists or not."""
    return f"{PREFIX}:{{hk:{digest}}}:rl:recovery"


#: Keys named by the unkeyed handle digest (before the deployment secret), as a SCAN pattern.
LEGACY_HANDLE_KEYS = f"{PREFIX}:{{h:*}}:*"


def rekeyed_handle_key(key: str, keyed: Callable[[str], str]) -> str | None:
    """The new name of a legacy handle key (``keyed`` maps its unkeyed digest to the keyed
    one), or None when ``key`` is not a legacy handle key."""
    head, sep, rest = key.partition(":{h:")
    digest, _, suffix = rest.partition("}:")
    if head != PREFIX or not sep or len(digest) != 32:
        return None
    if suffix == "handle":
        return handle_key(keyed(digest))
    if suffix == "rl:recovery":
        return recovery_bucket_key(keyed(digest))
    return None


def handle_digests_migrated() -> str:
    """String: set once the start-up migration to keyed handle digests has finished."""
    return f"{PREFIX}:{{migrations}}:handle_digests"


def nonce(value: str) -> str:
    """String with NONCE_TTL_S: a single-use sign-in challenge."""
    return f"{PREFIX}:{{n:{value}}}:nonce"


def puzzle_key() -> str:
    """String: the HMAC key all nodes sign client puzzles with; no personal data."""
    return f"{PREFIX}:{{puzzle}}:key"


def puzzle_spent(nonce: str) -> str:
    """String, at most PUZZLE_TTL_S: a solved puzzle, so it is accepted only once."""
    return f"{PREFIX}:{{pz:{nonce}}}:spent"


def signing_keys() -> str:
    """Hash: key id -> JSON server signing key (private key sealed under the deployment secret,
    creation time)."""
    return f"{PREFIX}:{{keyring}}:signing_keys"


def signing_key_newest() -> str:
    """String: creation time of the newest signing key (the rotation guard)."""
    return f"{PREFIX}:{{keyring}}:newest_at"


def report(report_id: str) -> str:
    """Hash, report retention: one abuse report (category, text, parties, decision)."""
    return f"{PREFIX}:{{r:{report_id}}}:report"


def report_queue() -> str:
    """Sorted set, report retention: report ids by filing time (the operators' queue)."""
    return f"{PREFIX}:{{moderation}}:reports"


def operators() -> str:
    """Hash: sha256(operator token) -> JSON operator record (name, created day)."""
    return f"{PREFIX}:{{moderation}}:operators"


def audit_log() -> str:
    """Stream, trimmed by MINID to the audit retention: every operator action."""
    return f"{PREFIX}:{{moderation}}:audit"


def webhook_events() -> str:
    """Stream, trimmed by MINID to the webhook retention: call lifecycle events to deliver
    (call id, per-call pseudonyms, type, time, end reason); one consumer group per URL."""
    return f"{PREFIX}:{{webhooks}}:events"


def webhook_dead_letters() -> str:
    """Stream, capped at WEBHOOK_DEAD_LETTERS_MAX and trimmed to the webhook retention: events
    that exhausted their delivery attempts, with the target and the last status."""
    return f"{PREFIX}:{{webhooks}}:dead"


def webhook_lease() -> str:
    """String with WEBHOOK_LEASE_TTL_S: the node id that delivers webhooks now."""
    return f"{PREFIX}:{{webhooks}}:lease"


# --- scale-out: nodes, device presence, call records (docs/scaling.md) --------------------------

#: A node whose heartbeat is older than this counts as dead.
NODE_DEAD_AFTER_S = 5
#: How often a node writes its heartbeat (and checks the others').
NODE_HEARTBEAT_S = 1.0
#: A draining node hands calls only to a node whose heartbeat is at most this old: one that
#: missed two beats may be dead already, though it is not yet counted so (NODE_DEAD_AFTER_S).
NODE_SUCCESSOR_FRESH_S = 2.5
#: A device's presence entry lives this long unless its node refreshes it.
PRESENCE_TTL_S = 10
#: How often a node refreshes the presence of the devices connected to it.
PRESENCE_REFRESH_S = 3.0
#: A call record outlives its last write by this much; the owner refreshes it while it runs.
CALL_RECORD_TTL_S = 10
#: Registry entries of nodes dead this long are removed (every survivor has seen them by then).
NODE_FORGET_AFTER_S = 60
#: How often a media node writes its heartbeat and load to the media-node registry.
MEDIA_HEARTBEAT_S = 1.0
#: A media node whose heartbeat is older than this gets no new rooms, and its rooms are lost.
MEDIA_DEAD_AFTER_S = 5


def presence(account_id: str) -> str:
    """Hash, PRESENCE_TTL_S: device id -> JSON (node id, connected, resume token digest, at)."""
    return f"{PREFIX}:{account_tag(account_id)}:presence"


def nodes() -> str:
    """Sorted set: signaling node id -> time of its last heartbeat (the node registry)."""
    return f"{PREFIX}:{{nodes}}:nodes"


def nodes_judged_dead() -> str:
    """Sorted set: node id -> when another node judged it dead and took over its calls.

    A node that comes back from an outage of its own reads it before it rewrites a call record
    that expired meanwhile: one taken over (and perhaps ended) by another node must stay gone.
    """
    return f"{PREFIX}:{{nodes}}:dead"


def nodes_draining() -> str:
    """Sorted set: node id -> its last heartbeat while draining. A draining node takes no
    calls from another draining node; it leaves the set when it stops, or is forgotten
    NODE_FORGET_AFTER_S after its last beat."""
    return f"{PREFIX}:{{nodes}}:draining"


def solo_nodes() -> str:
    """Sorted set: node id -> last heartbeat of a node routing locally (CALLBOOK_ROUTING=local)
    on this store; read to warn when several nodes share a store without routing between them."""
    return f"{PREFIX}:{{nodes}}:solo"


def broadcast_channel() -> str:
    """Pub/sub channel every signaling node listens on (device online/lost/resumed events)."""
    return f"{PREFIX}:{{nodes}}:broadcast"


def node_tag(node_id: str) -> str:
    return "{n:" + node_id + "}"


def node_inbox(node_id: str) -> str:
    """Pub/sub channel of one node: messages for the devices connected to it, forwarded events."""
    return f"{PREFIX}:{node_tag(node_id)}:inbox"


#: The readiness probe's own write expires this long after the last probe.
READINESS_PROBE_TTL_S = 60


def readiness_probe(node_id: str) -> str:
    """String, READINESS_PROBE_TTL_S: written by every ``/readyz``, which so checks that the
    store takes writes (a store whose disk is full still answers reads)."""
    return f"{PREFIX}:{node_tag(node_id)}:ready"


def node_calls(node_id: str) -> str:
    """Set, CALL_RECORD_TTL_S: ids of the calls a node owns (survivors take them over)."""
    return f"{PREFIX}:{node_tag(node_id)}:calls"


def call_tag(call_id: str) -> str:
    return "{c:" + call_id + "}"


def call_record(call_id: str) -> str:
    """Hash, CALL_RECORD_TTL_S: a live call's state (version, owner node, msgpack snapshot)."""
    return f"{PREFIX}:{call_tag(call_id)}:call"


# --- cross-node glare, busy and the operator's cluster view (docs/scaling.md) -------------------

#: The ring timeout a node uses unless configured otherwise (``Config.ring_timeout_s``).
DEFAULT_RING_TIMEOUT_S = 60
#: A ringing entry outlives its call's ring timeout by this much (its owner may have died).
RINGING_MARGIN_S = 10
#: A busy entry lives this long unless the call's owner refreshes it (with its call records).
BUSY_TTL_S = 10
#: A node's operator summary lives this long unless the node writes it again (every second).
SUMMARY_TTL_S = 5
#: How often a node writes its operator summary.
SUMMARY_REFRESH_S = 1.0


def ringing_pair(account_a: str, account_b: str) -> str:
    """Hash, ring timeout + RINGING_MARGIN_S: call id -> JSON (caller account, owner node,
    deadline) of the 1:1 calls ringing between two accounts, either way. One key per pair, so
    that adding a call and finding the one crossing it (glare) is one atomic script."""
    low, high = sorted((account_a, account_b))
    return f"{PREFIX}:{{p:{low}:{high}}}:ringing"


def busy(account_id: str) -> str:
    """Hash, BUSY_TTL_S: device id -> JSON (call id, owner node, until) for each device of the
    account in a connected call, written by the call's owner so every node sees it busy."""
    return f"{PREFIX}:{account_tag(account_id)}:busy"


def node_summary(node_id: str) -> str:
    """String, SUMMARY_TTL_S: JSON of a node's operator view (the node, its live calls with
    pseudonyms only), so the operator API of any node lists every node's calls."""
    return f"{PREFIX}:{node_tag(node_id)}:summary"


def media_nodes() -> str:
    """Hash: media node id -> JSON (control URL, load, started and heartbeat times); entries of
    nodes silent for NODE_FORGET_AFTER_S are removed by the readers."""
    return f"{PREFIX}:{{media}}:nodes"


# --- what erase leaves on the store's disk (directory/disk.py) ----------------------------------

#: A node holding the rewrite lease this long without finishing counts as gone.
REWRITE_LEASE_S = 600


def erasures() -> str:
    """String (counter): erasures so far; each one asks for a rewrite of the store's files."""
    return f"{PREFIX}:{{disk}}:erasures"


def erasures_rewritten() -> str:
    """String (counter): the erasures that the last finished rewrite of the store's files
    covers (every erasure counted before that rewrite started)."""
    return f"{PREFIX}:{{disk}}:rewritten"


def rewrite_lease() -> str:
    """String with REWRITE_LEASE_S: the node id rewriting the store's files now."""
    return f"{PREFIX}:{{disk}}:lease"
