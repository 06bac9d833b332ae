"""What the store holds about people, why, for how long, and who sees it: the one list.

Erase deletes exactly the per-account entries named here; a test scans a store after a full
scenario and fails on any key no entry describes, or a TTL that disagrees with the stated
retention. ``GET /v1/privacy/inventory`` publishes the list as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from directory import keys

Scope = Literal["account", "handle", "ephemeral", "server", "moderation"]


class Datum(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    key_pattern: str
    fields: list[str]
    purpose: str
    retention: str
    #: Upper bound of the key's TTL in seconds; None when it lives until erased.
    max_ttl_s: int | None
    #: Whether a key may also have no TTL at all (a handle while it is owned).
    may_persist: bool = False
    visible_to: str
    scope: Scope
    in_export: bool


_ACCOUNT = "{account_id}"
_DIGEST = "{sha256(handle)}"

# Per-account entries, with the key builder erase uses.
_PER_ACCOUNT: tuple[tuple[Callable[[str], str], Datum], ...] = (
    (keys.account, Datum(
        name="account", key_pattern=keys.account(_ACCOUNT),
        fields=["handle", "display_name", "created_day", "discoverable", "who_can_call",
                "hide_ip", "recovery_hash", "suspended", "handle_banned"],
        purpose="Who you are on Callbook and your privacy settings; the recovery code's hash "
                "lets you enroll a new device; whether an operator suspended the account (the "
                "day) or banned its handle.",
        retention="until you erase your account", max_ttl_s=None,
        visible_to="you; your handle and display name to people allowed to find you",
        scope="account", in_export=True)),
    (keys.devices, Datum(
        name="devices", key_pattern=keys.devices(_ACCOUNT),
        fields=["device_id", "name", "public_key", "created_day", "last_seen_day"],
        purpose="Signing in: each device proves it holds the private key of a public key here.",
        retention="until the device is revoked or the account erased", max_ttl_s=None,
        visible_to="you", scope="account", in_export=True)),
    (keys.contacts, Datum(
        name="contacts", key_pattern=keys.contacts(_ACCOUNT),
        fields=["contact_account_id", "nickname", "added_day"],
        purpose="Your address book; who-can-call 'contacts' and discoverability use it.",
        retention="until you remove the contact, either account is erased", max_ttl_s=None,
        visible_to="you", scope="account", in_export=True)),
    (keys.contact_of, Datum(
        name="contact_of", key_pattern=keys.contact_of(_ACCOUNT),
        fields=["account_id"],
        purpose="Reverse index: whose contacts list names you, so erase can remove you there.",
        retention="as long as those entries exist", max_ttl_s=None,
        visible_to="nobody (used by erase)", scope="account", in_export=False)),
    (keys.blocks, Datum(
        name="blocks", key_pattern=keys.blocks(_ACCOUNT),
        fields=["blocked_account_id", "blocked_day"],
        purpose="People who may not find or call you.",
        retention="until you unblock, either account is erased", max_ttl_s=None,
        visible_to="you", scope="account", in_export=True)),
    (keys.blocked_by, Datum(
        name="blocked_by", key_pattern=keys.blocked_by(_ACCOUNT),
        fields=["account_id"],
        purpose="Reverse index: who blocks you, so erase can remove you from their lists.",
        retention="as long as those blocks exist", max_ttl_s=None,
        visible_to="nobody (used by erase)", scope="account", in_export=False)),
    (keys.lookup_bucket, Datum(
        name="lookup_rate_limit", key_pattern=keys.lookup_bucket(_ACCOUNT),
        fields=["tokens", "ts"],
        purpose="Limits handle lookups so nobody can enumerate the address book.",
        retention="1 hour after the last lookup", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="account", in_export=False)),
    (keys.invite_bucket, Datum(
        name="call_rate_limit", key_pattern=keys.invite_bucket(_ACCOUNT),
        fields=["tokens", "ts"],
        purpose="Limits how many calls an account places.",
        retention="1 hour after the last call", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="account", in_export=False)),
    (keys.missed_calls, Datum(
        name="missed_calls", key_pattern=keys.missed_calls(_ACCOUNT),
        fields=["caller_account_id", "caller_handle", "at"],
        purpose="Missed calls, so you can call back. Nothing else about calls is kept.",
        retention="30 days", max_ttl_s=keys.MISSED_CALLS_TTL_S,
        visible_to="you", scope="account", in_export=True)),
    (keys.missed_by, Datum(
        name="missed_by", key_pattern=keys.missed_by(_ACCOUNT),
        fields=["account_id"],
        purpose="Reverse index: whose missed calls name you, so erase can remove them.",
        retention="30 days", max_ttl_s=keys.MISSED_CALLS_TTL_S,
        visible_to="nobody (used by erase)", scope="account", in_export=False)),
    (keys.push_tokens, Datum(
        name="push_registrations", key_pattern=keys.push_tokens(_ACCOUNT),
        fields=["device_id", "provider", "token"],
        purpose="Waking your offline devices when someone calls.",
        retention="until removed, the device revoked or the account erased", max_ttl_s=None,
        visible_to="you; the push relay receives a token when it wakes that device",
        scope="account", in_export=True)),
    (keys.report_bucket, Datum(
        name="report_rate_limit", key_pattern=keys.report_bucket(_ACCOUNT),
        fields=["tokens", "ts"],
        purpose="Limits how many abuse reports an account files.",
        retention="1 hour after the last report", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="account", in_export=False)),
    (keys.reports_filed, Datum(
        name="reports_filed", key_pattern=keys.reports_filed(_ACCOUNT),
        fields=["report_id"],
        purpose="Which abuse reports you filed: your export lists them; erase anonymises them.",
        retention="180 days after your last report (configurable)",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="you (as the reports, in your export)", scope="account", in_export=True)),
    (keys.reports_about, Datum(
        name="reports_about", key_pattern=keys.reports_about(_ACCOUNT),
        fields=["report_id"],
        purpose="Reverse index: which reports name you, so erase can remove you from them.",
        retention="180 days after the last report naming you (configurable)",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="nobody (used by erase)", scope="account", in_export=False)),
    (keys.notices, Datum(
        name="notices", key_pattern=keys.notices(_ACCOUNT),
        fields=["kind", "statement", "decision", "report_id", "role", "at"],
        purpose="Statements of reasons: operators' decisions on reports you filed or that "
                "name you, and suspensions of your account.",
        retention="180 days (configurable)", max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="you (GET /v1/me/notices)", scope="account", in_export=True)),
    (keys.presence, Datum(
        name="presence", key_pattern=keys.presence(_ACCOUNT),
        fields=["device_id", "node", "connected", "sha256(resume token)", "at"],
        purpose="Which server node each of your connected devices is on, so a call placed on "
                "any node rings them; the resume token's digest lets a dropped device resume "
                "on another node.",
        retention="while a device is connected, then at most 10 seconds",
        max_ttl_s=keys.PRESENCE_TTL_S,
        visible_to="servers", scope="account", in_export=False)),
    (keys.busy, Datum(
        name="busy", key_pattern=keys.busy(_ACCOUNT),
        fields=["device_id", "call_id", "node", "until"],
        purpose="Which of your devices are in a connected call, so a call placed on another "
                "server node tells them it is call waiting (busy), as one node would.",
        retention="while the device is in the call, then at most 10 seconds",
        max_ttl_s=keys.BUSY_TTL_S,
        visible_to="servers", scope="account", in_export=False)),
)  # fmt: skip

_OTHERS: tuple[Datum, ...] = (
    Datum(
        name="handle", key_pattern=keys.handle_key(_DIGEST),
        fields=["account_id or quarantine marker"],
        purpose="Finding an account by handle; a released handle is held back so nobody can "
                "pose as its former owner.",
        retention="while the account holds it; then 30 days of quarantine (configurable)",
        max_ttl_s=keys.DEFAULT_HANDLE_QUARANTINE_S, may_persist=True,
        visible_to="nobody directly; lookups", scope="handle",
        in_export=False),
    Datum(
        name="recovery_rate_limit", key_pattern=keys.recovery_bucket_key(_DIGEST),
        fields=["tokens", "ts"],
        purpose="Limits recovery-code attempts per handle, whether or not it exists.",
        retention="1 hour after the last attempt", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="handle", in_export=False),
    Datum(
        name="signin_challenge", key_pattern=keys.nonce("{nonce}"), fields=["nonce"],
        purpose="A single-use sign-in challenge; names no account.",
        retention="60 seconds or first use", max_ttl_s=keys.NONCE_TTL_S,
        visible_to="nobody", scope="ephemeral", in_export=False),
    Datum(
        name="signing_keys", key_pattern=keys.signing_keys(),
        fields=["kid", "private_key", "created_at"],
        purpose="The server's keys for signing access tokens; no personal data.",
        retention="until a newer key has signed for longer than a token lives",
        max_ttl_s=None, visible_to="servers", scope="server", in_export=False),
    Datum(
        name="signing_key_rotation", key_pattern=keys.signing_key_newest(),
        fields=["created_at"], purpose="When the newest signing key was made.",
        retention="permanent, no personal data", max_ttl_s=None, visible_to="servers",
        scope="server", in_export=False),
    Datum(
        name="abuse_report", key_pattern=keys.report("{report_id}"),
        fields=["category", "text", "call_id", "at", "status", "reporter_account_id",
                "reported_account_id", "decision", "statement", "decided_at"],
        purpose="An abuse report and the operator's decision on it. A report whose handle "
                "matched nobody the reporter may find names no reported account.",
        retention="180 days (CALLBOOK_REPORT_RETENTION_DAYS); the reporter's id is removed "
                  "when the reporter erases the account, the reported id when that one does",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="operators; the reporter (in their export, without the reported party)",
        scope="moderation", in_export=True),
    Datum(
        name="report_queue", key_pattern=keys.report_queue(), fields=["report_id", "at"],
        purpose="The operators' queue of reports, by filing time.",
        retention="each entry 180 days (configurable)",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S, visible_to="operators",
        scope="moderation", in_export=False),
    Datum(
        name="operators", key_pattern=keys.operators(),
        fields=["sha256(token)", "operator_name", "created_day"],
        purpose="Who may use the operator API; tokens are kept only as digests.",
        retention="until the operator is revoked", max_ttl_s=None,
        visible_to="servers; `callbook operator list`", scope="moderation", in_export=False),
    Datum(
        name="audit_log", key_pattern=keys.audit_log(),
        fields=["at", "operator", "action", "target (call, account or report id)", "reason"],
        purpose="Accountability: every operator action, including every reveal of handles. "
                "Append-only; no API edits it.",
        retention="365 days per entry (CALLBOOK_AUDIT_RETENTION_DAYS); trimmed from the old end",
        max_ttl_s=None, visible_to="operators", scope="moderation", in_export=False),
    Datum(
        name="webhook_events", key_pattern=keys.webhook_events(),
        fields=["event_id", "call_id", "seq", "type", "at", "participant (per-call pseudonym)",
                "role", "end reason"],
        purpose="Call lifecycle events waiting for delivery to the operator's webhook URLs "
                "(only when CALLBOOK_WEBHOOK_URLS is set). Participants are HMAC pseudonyms "
                "valid within one call; no handle, account id or address.",
        retention="3 days per entry (CALLBOOK_WEBHOOK_RETENTION_HOURS), or less once the "
                  "stream holds a million events; trimmed from the old end",
        max_ttl_s=None, visible_to="servers; the configured webhook receivers",
        scope="server", in_export=False),
    Datum(
        name="webhook_dead_letters", key_pattern=keys.webhook_dead_letters(),
        fields=["event (as above)", "target URL", "attempts", "last status"],
        purpose="Lifecycle events no receiver accepted after every attempt, for operators to "
                "inspect or replay.",
        retention="the newest 10,000, each at most 3 days (the webhook retention)",
        max_ttl_s=None, visible_to="operators (redis-cli)", scope="server", in_export=False),
    Datum(
        name="webhook_lease", key_pattern=keys.webhook_lease(), fields=["node_id"],
        purpose="Which node delivers webhooks now, so events of a call go out in order.",
        retention="15 seconds after the node's last renewal", max_ttl_s=keys.WEBHOOK_LEASE_TTL_S,
        visible_to="servers", scope="server", in_export=False),
    Datum(
        name="signaling_nodes", key_pattern=keys.nodes(), fields=["node_id", "heartbeat_at"],
        purpose="Which signaling nodes are alive; a node silent for 5 seconds counts as dead.",
        retention="while the node runs, then 60 seconds", max_ttl_s=None,
        visible_to="servers", scope="server", in_export=False),
    Datum(
        name="nodes_judged_dead", key_pattern=keys.nodes_judged_dead(),
        fields=["node_id", "judged_dead_at"],
        purpose="Which nodes were taken for dead, so one back from an outage does not rewrite "
                "call records another node took over.",
        retention="60 seconds", max_ttl_s=None, visible_to="servers", scope="server",
        in_export=False),
    Datum(
        name="media_nodes", key_pattern=keys.media_nodes(),
        fields=["node_id", "control_url", "rooms", "participants", "started_at", "heartbeat_at"],
        purpose="Which media nodes (SFUs) are alive and how loaded, to place each new room.",
        retention="while the node runs, then 60 seconds", max_ttl_s=None,
        visible_to="servers", scope="server", in_export=False),
    Datum(
        name="node_calls", key_pattern=keys.node_calls("{node_id}"), fields=["call_id"],
        purpose="The calls a node runs, so another node can take them over if it dies.",
        retention="while the calls run, then at most 10 seconds",
        max_ttl_s=keys.CALL_RECORD_TTL_S, visible_to="servers", scope="ephemeral",
        in_export=False),
    Datum(
        name="live_call", key_pattern=keys.call_record("{call_id}"),
        fields=["version", "owner_node",
                "state: call id, media, phase, relay_only, sfu, reachable, the account and "
                "device ids of the parties and of the devices it rings, ring and resume "
                "deadlines, the SFU room's media node; for a group call the host's and the "
                "invited account ids and each participant's device id, participant id, mute "
                "and publish state. No handle and no display name: a node that takes the call "
                "over reads them from the account records"],
        purpose="A live call's state, so any node can continue it when its node dies. Written "
                "only with CALLBOOK_ROUTING=redis (several nodes); one node keeps calls in "
                "memory only.",
        retention="while the call runs, then at most 10 seconds; a store with an append-only "
                  "file keeps each write in it until the file's next rewrite",
        max_ttl_s=keys.CALL_RECORD_TTL_S, visible_to="servers", scope="ephemeral",
        in_export=False),
    Datum(
        name="ringing_between", key_pattern=keys.ringing_pair(_ACCOUNT, _ACCOUNT),
        fields=["call_id", "caller account_id", "owner_node", "deadline"],
        purpose="The calls ringing between two accounts, so two people calling each other at "
                "once through different server nodes end up in one call (glare).",
        retention="while the call rings, then at most the ring timeout + 10 seconds",
        max_ttl_s=keys.DEFAULT_RING_TIMEOUT_S + keys.RINGING_MARGIN_S, visible_to="servers",
        scope="ephemeral", in_export=False),
    Datum(
        name="node_summary", key_pattern=keys.node_summary("{node_id}"),
        fields=["node (id, version, connections, calls)", "live calls (pseudonyms only)"],
        purpose="What the operator API shows of a node's live calls, so any node lists all.",
        retention="rewritten every second while the node runs, then at most 5 seconds",
        max_ttl_s=keys.SUMMARY_TTL_S, visible_to="operators (pseudonymised)",
        scope="server", in_export=False),
)  # fmt: skip

INVENTORY: tuple[Datum, ...] = tuple(datum for _, datum in _PER_ACCOUNT) + _OTHERS


def account_keys(account_id: str) -> tuple[str, ...]:
    """Every key that belongs to one account: what erase deletes."""
    return tuple(build(account_id) for build, _ in _PER_ACCOUNT)


def glob(datum: Datum) -> str:
    """The SCAN pattern of an entry's keys."""
    pattern = datum.key_pattern
    for placeholder in (_ACCOUNT, _DIGEST, "{nonce}", "{report_id}", "{node_id}", "{call_id}"):
        pattern = pattern.replace(placeholder, "*")
    return pattern
