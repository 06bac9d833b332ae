"""What the store holds about people, why, for how long, and who sees it: the one list.

Each entry names every field its keys hold, by the name the store gives it: erase deletes
exactly the per-account entries, export works from the same list, and a test walks a store
after a full workload and fails on any key or field no entry names, or a TTL that disagrees
with the stated retention. ``GET /v1/privacy/inventory`` publishes the list as it is, and
docs/privacy.md says the same in plain language (a test compares them field by field).

How fields are named: a hash's field names; for a hash, set or sorted set of entries keyed by
an id, ``entry`` names that id, and the other fields are the keys of each JSON value (in order
for a JSON array; the one value field for a plain value); a sorted set's score is ``score``; a
stream's field names; a JSON object inside a field is named ``field.key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from directory.storage import keys

Scope = Literal["account", "handle", "ephemeral", "server", "moderation"]
Kind = Literal["hash", "string", "set", "sorted_set", "stream"]


class Datum(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    key_pattern: str
    #: Every field stored, by its name in the store (see the module's docstring).
    fields: list[str]
    #: The key's type in the store.
    type: Kind
    #: Entries keyed by an id (hash field, set or sorted-set member): what that id is.
    entry: str | None = None
    #: A sorted set: what its score is.
    score: str | None = None
    purpose: str
    retention: str
    #: Upper bound of the key's TTL in seconds; None when it lives until erased.
    max_ttl_s: int | None
    #: Whether a key may also have no TTL at all (a handle while it is owned).
    may_persist: bool = False
    visible_to: str
    scope: Scope
    in_export: bool
    #: Where your export (``GET /v1/me/export``) holds it, or why it does not.
    export: str


_ACCOUNT = "{account_id}"
_DIGEST = "{hmac(deployment secret, handle)}"
_PAYLOAD = ["payload", "payload.id", "payload.type", "payload.call_id", "payload.seq",
            "payload.at", "payload.kind", "payload.media", "payload.participant", "payload.role",
            "payload.reason"]  # fmt: skip
_LIMIT = "Not exported: a throttle's state (tokens left, time of the last use), gone an hour later."

# Per-account entries, with the key builder erase uses.
_PER_ACCOUNT: tuple[tuple[Callable[[str], str], Datum], ...] = (
    (keys.account, Datum(
        name="account", key_pattern=keys.account(_ACCOUNT), type="hash",
        fields=["handle", "display_name", "created_day", "discoverable", "who_can_call",
                "relay_calls", "hide_ip", "recovery_hash", "suspended", "handle_banned"],
        purpose="Who you are on Callbook and your privacy settings (`hide_ip` only in accounts "
                "made before `relay_calls`, which replaces it); the recovery code's hash "
                "lets you enroll a new device; whether an operator suspended the account (the "
                "day) or banned its handle.",
        retention="until you erase your account", max_ttl_s=None,
        visible_to="you; your handle and display name to people allowed to find you",
        scope="account", in_export=True,
        export="`account`; the suspension day and the handle ban in `moderation`. Not "
               "`recovery_hash`: `recovery_code` says how the code is kept (its hash is no use "
               "to you, and a leaked export would let anyone test guesses of the code).")),
    (keys.devices, Datum(
        name="devices", key_pattern=keys.devices(_ACCOUNT), type="hash", entry="device_id",
        fields=["device_id", "name", "public_key", "created_day", "last_seen_day", "media_key",
                "media_key_signature"],
        purpose="Signing in: each device proves it holds the private key of a public key here; "
                "end-to-end encrypted calls: the other participants of a call through the SFU "
                "get the device's media key (an X25519 public key signed by the device key) "
                "and seal their media keys to it.",
        retention="until the device is revoked or the account erased", max_ttl_s=None,
        visible_to="you; the public keys to the other participants of a call through the SFU",
        scope="account", in_export=True, export="`devices`")),
    (keys.contacts, Datum(
        name="contacts", key_pattern=keys.contacts(_ACCOUNT), type="hash",
        entry="contact_account_id", fields=["contact_account_id", "nickname", "added_day"],
        purpose="Your address book; who-can-call 'contacts' and discoverability use it.",
        retention="until you remove the contact, either account is erased", max_ttl_s=None,
        visible_to="you", scope="account", in_export=True, export="`contacts`")),
    (keys.contact_of, Datum(
        name="contact_of", key_pattern=keys.contact_of(_ACCOUNT), type="set",
        entry="account_id", fields=["account_id"],
        purpose="Reverse index: whose contacts list names you, so erase can remove you there.",
        retention="as long as those entries exist", max_ttl_s=None,
        visible_to="nobody (used by erase)", scope="account", in_export=False,
        export="Not exported: it is the other people's address books, not yours.")),
    (keys.blocks, Datum(
        name="blocks", key_pattern=keys.blocks(_ACCOUNT), type="hash",
        entry="blocked_account_id", fields=["blocked_account_id", "blocked_day"],
        purpose="People who may not find or call you.",
        retention="until you unblock, either account is erased", max_ttl_s=None,
        visible_to="you", scope="account", in_export=True, export="`blocks`")),
    (keys.blocked_by, Datum(
        name="blocked_by", key_pattern=keys.blocked_by(_ACCOUNT), type="set",
        entry="account_id", fields=["account_id"],
        purpose="Reverse index: who blocks you, so erase can remove you from their lists.",
        retention="as long as those blocks exist", max_ttl_s=None,
        visible_to="nobody (used by erase)", scope="account", in_export=False,
        export="Not exported: who blocks you is theirs to know; a block looks like 'offline'.")),
    (keys.lookup_bucket, Datum(
        name="lookup_rate_limit", key_pattern=keys.lookup_bucket(_ACCOUNT), type="hash",
        fields=["tokens", "ts"],
        purpose="Limits handle lookups so nobody can enumerate the address book.",
        retention="1 hour after the last lookup", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="account", in_export=False, export=_LIMIT)),
    (keys.young_lookup_bucket, Datum(
        name="young_lookup_rate_limit", key_pattern=keys.young_lookup_bucket(_ACCOUNT),
        type="hash", fields=["tokens", "ts"],
        purpose="The smaller lookup budget of an account created today or yesterday, so "
                "signing up many accounts does not multiply lookups.",
        retention="1 hour after the last lookup", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="account", in_export=False, export=_LIMIT)),
    (keys.renames, Datum(
        name="handle_changes", key_pattern=keys.renames(_ACCOUNT), type="string",
        fields=["count"],
        purpose="How many times you changed your handle in the last day: each change holds "
                "a name back for everyone, so a few a day are allowed.",
        retention="1 day after the first change it counts", max_ttl_s=keys.RENAMES_WINDOW_S,
        visible_to="nobody", scope="account", in_export=False,
        export="Not exported: a count of today's handle changes, gone a day later.")),
    (keys.invite_bucket, Datum(
        name="call_rate_limit", key_pattern=keys.invite_bucket(_ACCOUNT), type="hash",
        fields=["tokens", "ts"],
        purpose="Limits how many calls an account places.",
        retention="1 hour after the last call", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="account", in_export=False, export=_LIMIT)),
    (keys.missed_calls, Datum(
        name="missed_calls", key_pattern=keys.missed_calls(_ACCOUNT), type="sorted_set",
        score="at", fields=["caller_account_id", "caller_handle", "at"],
        purpose="Missed calls, so you can call back. Nothing else about calls is kept.",
        retention="30 days", max_ttl_s=keys.MISSED_CALLS_TTL_S,
        visible_to="you", scope="account", in_export=True, export="`missed_calls`")),
    (keys.missed_by, Datum(
        name="missed_by", key_pattern=keys.missed_by(_ACCOUNT), type="set",
        entry="account_id", fields=["account_id"],
        purpose="Reverse index: whose missed calls name you, so erase can remove them.",
        retention="30 days", max_ttl_s=keys.MISSED_CALLS_TTL_S,
        visible_to="nobody (used by erase)", scope="account", in_export=False,
        export="Not exported: it is the other people's call lists, and would tell you who "
               "did not answer you.")),
    (keys.push_tokens, Datum(
        name="push_registrations", key_pattern=keys.push_tokens(_ACCOUNT), type="hash",
        entry="device_id", fields=["device_id", "provider", "token", "delivery"],
        purpose="Waking your offline devices when someone calls.",
        retention="until removed, the device revoked or the account erased", max_ttl_s=None,
        visible_to="you; the push relay, or Apple (APNs) or Google (FCM) for direct delivery, "
        "receives a token when it wakes that device",
        scope="account", in_export=True, export="`push_registrations`")),
    (keys.report_bucket, Datum(
        name="report_rate_limit", key_pattern=keys.report_bucket(_ACCOUNT), type="hash",
        fields=["tokens", "ts"],
        purpose="Limits how many abuse reports an account files.",
        retention="1 hour after the last report", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="account", in_export=False, export=_LIMIT)),
    (keys.reports_filed, Datum(
        name="reports_filed", key_pattern=keys.reports_filed(_ACCOUNT), type="set",
        entry="report_id", fields=["report_id"],
        purpose="Which abuse reports you filed: your export lists them; erase anonymises them.",
        retention="180 days after your last report (configurable)",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="you (as the reports, in your export)", scope="account", in_export=True,
        export="`reports_filed`, each report in full (see abuse_report)")),
    (keys.reports_about, Datum(
        name="reports_about", key_pattern=keys.reports_about(_ACCOUNT), type="set",
        entry="report_id", fields=["report_id"],
        purpose="Reverse index: which reports name you, so erase can remove you from them.",
        retention="180 days after the last report naming you (configurable)",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="nobody (used by erase)", scope="account", in_export=False,
        export="Not exported, to protect the people who report: a decision that acts on you "
               "reaches you as a notice (`notices`), and the operator's action on your "
               "account is in `operator_actions`.")),
    (keys.notices, Datum(
        name="notices", key_pattern=keys.notices(_ACCOUNT), type="sorted_set", score="at",
        fields=["id", "at", "kind", "statement", "decision", "report", "role"],
        purpose="Statements of reasons: operators' decisions on reports you filed or that "
                "name you, and suspensions of your account.",
        retention="180 days (configurable)", max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="you (GET /v1/me/notices)", scope="account", in_export=True,
        export="`notices`")),
    (keys.presence, Datum(
        name="presence", key_pattern=keys.presence(_ACCOUNT), type="hash", entry="device_id",
        fields=["device_id", "node", "connected", "resume", "at"],
        purpose="Which server node each of your connected devices is on, so a call placed on "
                "any node rings them; `resume` is a digest of the resume token, so a dropped "
                "device can resume on another node.",
        retention="while a device is connected, then at most 10 seconds",
        max_ttl_s=keys.PRESENCE_TTL_S,
        visible_to="servers", scope="account", in_export=False,
        export="Not exported: routing state that is gone seconds after your devices are; "
               "your devices are in `devices`.")),
    (keys.busy, Datum(
        name="busy", key_pattern=keys.busy(_ACCOUNT), type="hash", entry="device_id",
        fields=["device_id", "call", "node", "until"],
        purpose="Which of your devices are in a connected call, so a call placed on another "
                "server node tells them it is call waiting (busy), as one node would.",
        retention="while the device is in the call, then at most 10 seconds",
        max_ttl_s=keys.BUSY_TTL_S,
        visible_to="servers", scope="account", in_export=False,
        export="Not exported: it exists only while you are in a call, and goes 10 seconds "
               "after.")),
)  # fmt: skip

_OTHERS: tuple[Datum, ...] = (
    Datum(
        name="handle", key_pattern=keys.handle_key(_DIGEST), type="string",
        fields=["account_id"],
        purpose="Finding an account by handle; a released handle is held back so nobody can "
                "pose as its former owner (the value is then the quarantine marker '-').",
        retention="while the account holds it; then 30 days of quarantine (configurable), "
                  "for ever for a banned handle",
        max_ttl_s=keys.DEFAULT_HANDLE_QUARANTINE_S, may_persist=True,
        visible_to="nobody directly; lookups", scope="handle", in_export=False,
        export="Not exported as such: your handle and account id are in `account`."),
    Datum(
        name="recovery_rate_limit", key_pattern=keys.recovery_bucket_key(_DIGEST),
        type="hash", fields=["tokens", "ts"],
        purpose="Limits recovery-code attempts per handle, whether or not it exists.",
        retention="1 hour after the last attempt", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="handle", in_export=False,
        export="Not exported: kept for any handle tried, it links to no account."),
    Datum(
        name="young_lookups_rate_limit", key_pattern=keys.young_lookups_bucket(), type="hash",
        fields=["tokens", "ts"],
        purpose="One budget for the lookups of all accounts younger than a day; names nobody.",
        retention="1 hour after the last such lookup", max_ttl_s=keys.RATE_LIMIT_IDLE_TTL_S,
        visible_to="nobody", scope="server", in_export=False, export=_LIMIT),
    Datum(
        name="puzzle_key", key_pattern=keys.puzzle_key(), type="string",
        fields=["key"],
        purpose="The key every node signs client puzzles with; no personal data.",
        retention="permanent, no personal data", max_ttl_s=None, visible_to="servers",
        scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="puzzle_spent", key_pattern=keys.puzzle_spent("{nonce}"), type="string",
        fields=["solved"],
        purpose="A solved sign-up or recovery puzzle, so it counts once; names nobody.",
        retention="until the puzzle expires (120 seconds at most)", max_ttl_s=keys.PUZZLE_TTL_S,
        visible_to="nobody", scope="ephemeral", in_export=False,
        export="Not exported: it names nobody."),
    Datum(
        name="signin_challenge", key_pattern=keys.nonce("{nonce}"), type="string",
        fields=["nonce"],
        purpose="A single-use sign-in challenge (the key is the nonce, the value a "
                "placeholder); names no account.",
        retention="60 seconds or first use", max_ttl_s=keys.NONCE_TTL_S,
        visible_to="nobody", scope="ephemeral", in_export=False,
        export="Not exported: it names nobody."),
    Datum(
        name="signing_keys", key_pattern=keys.signing_keys(), type="hash", entry="kid",
        fields=["kid", "created_at", "sealed"],
        purpose="The server's keys for signing access tokens; no personal data. `sealed` is "
                "the private key under AES-GCM with the deployment secret: read access to the "
                "store does not let anyone mint tokens.",
        retention="until a newer key has signed for longer than a token lives",
        max_ttl_s=None, visible_to="servers", scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="signing_key_rotation", key_pattern=keys.signing_key_newest(), type="string",
        fields=["created_at"], purpose="When the newest signing key was made.",
        retention="permanent, no personal data", max_ttl_s=None, visible_to="servers",
        scope="server", in_export=False, export="Not exported: no personal data."),
    Datum(
        name="abuse_report", key_pattern=keys.report("{report_id}"), type="hash",
        fields=["category", "text", "call_id", "at", "status", "reporter", "reported",
                "decision", "statement", "decided_at"],
        purpose="An abuse report and the operator's decision on it: `reporter` and `reported` "
                "are account ids. A report whose handle matched nobody the reporter may find "
                "names no reported account.",
        retention="180 days (CALLBOOK_REPORT_RETENTION_DAYS); the reporter's id is removed "
                  "when the reporter erases the account, the reported id when that one does",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S,
        visible_to="operators; the reporter (in their export, without the reported party)",
        scope="moderation", in_export=True,
        export="Reports you filed are in `reports_filed`, decision and `decided_at` included; "
               "not `reported`, nor whether the handle matched anyone (`status` reads "
               "`received` for an unmatched report): that would make reports a way to find "
               "hidden accounts. Reports naming you are not exported, to protect the people "
               "who report (see reports_about)."),
    Datum(
        name="report_queue", key_pattern=keys.report_queue(), type="sorted_set",
        entry="report_id", score="at", fields=["report_id", "at"],
        purpose="The operators' queue of reports, by filing time.",
        retention="each entry 180 days (configurable)",
        max_ttl_s=keys.DEFAULT_REPORT_RETENTION_S, visible_to="operators",
        scope="moderation", in_export=False,
        export="Not exported: the ids and times of your reports are in `reports_filed`."),
    Datum(
        name="operators", key_pattern=keys.operators(), type="hash", entry="sha256(token)",
        fields=["sha256(token)", "name", "created_day"],
        purpose="Who may use the operator API; tokens are kept only as digests.",
        retention="until the operator is revoked", max_ttl_s=None,
        visible_to="servers; `callbook operator list`", scope="moderation", in_export=False,
        export="Not exported: about operators, not users."),
    Datum(
        name="audit_log", key_pattern=keys.audit_log(), type="stream",
        fields=["at", "operator", "action", "target", "reason"],
        purpose="Accountability: every operator action, including every reveal of handles. "
                "`target` is a call id, an account id, `account_id/device_id` or a report id. "
                "Append-only; no API edits it. When an account is erased, its ids in every "
                "entry (target and reason) become a random pseudonym, a new one per entry.",
        retention="365 days per entry (CALLBOOK_AUDIT_RETENTION_DAYS); trimmed from the old "
                  "end; the erased person's ids are replaced at erase",
        max_ttl_s=None, visible_to="operators", scope="moderation", in_export=True,
        export="Entries that target your account, one of your devices or a report you filed "
               "are in `operator_actions`, without `operator` (the operator's name is about "
               "the operator, not you). Entries that target a call name no person, and nothing "
               "kept after a call links its id to you."),
    Datum(
        name="webhook_events", key_pattern=keys.webhook_events(), type="stream",
        fields=["id", "call_id", "seq", "type", *_PAYLOAD, "delivery_group"],
        purpose="Call lifecycle events waiting for delivery to the operator's webhook URLs "
                "(only when CALLBOOK_WEBHOOK_URLS is set). `payload` is the event as sent: "
                "`kind` (1:1 or group), `media`, and participants as HMAC pseudonyms valid "
                "within one call; no handle, account id or address. One delivery group per "
                "URL keeps its position.",
        retention="3 days per entry (CALLBOOK_WEBHOOK_RETENTION_HOURS), or less once the "
                  "stream holds a million events; trimmed from the old end",
        max_ttl_s=None, visible_to="servers; the configured webhook receivers",
        scope="server", in_export=False,
        export="Not exported: pseudonyms valid within one call link to no account."),
    Datum(
        name="webhook_dead_letters", key_pattern=keys.webhook_dead_letters(), type="stream",
        fields=["url", "call_id", "attempts", "last_status", *_PAYLOAD],
        purpose="Lifecycle events no receiver accepted after every attempt (the whole event "
                "in `payload`), for operators to inspect or replay.",
        retention="the newest 10,000, each at most 3 days (the webhook retention)",
        max_ttl_s=None, visible_to="operators (redis-cli)", scope="server", in_export=False,
        export="Not exported: as the webhook events."),
    Datum(
        name="webhook_lease", key_pattern=keys.webhook_lease(), type="string",
        fields=["node_id"],
        purpose="Which node delivers webhooks now, so events of a call go out in order.",
        retention="15 seconds after the node's last renewal", max_ttl_s=keys.WEBHOOK_LEASE_TTL_S,
        visible_to="servers", scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="signaling_nodes", key_pattern=keys.nodes(), type="sorted_set", entry="node_id",
        score="heartbeat_at", fields=["node_id", "heartbeat_at"],
        purpose="Which signaling nodes are alive; a node silent for 5 seconds counts as dead.",
        retention="while the node runs, then 60 seconds", max_ttl_s=None,
        visible_to="servers", scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="nodes_judged_dead", key_pattern=keys.nodes_judged_dead(), type="sorted_set",
        entry="node_id", score="judged_dead_at", fields=["node_id", "judged_dead_at"],
        purpose="Which nodes were taken for dead, so one back from an outage does not rewrite "
                "call records another node took over.",
        retention="60 seconds", max_ttl_s=None, visible_to="servers", scope="server",
        in_export=False, export="Not exported: no personal data."),
    Datum(
        name="nodes_draining", key_pattern=keys.nodes_draining(), type="sorted_set",
        entry="node_id", score="heartbeat_at", fields=["node_id", "heartbeat_at"],
        purpose="Which signaling nodes are draining, so that none hands its calls to another "
                "that is leaving too.",
        retention="while the node drains, then 60 seconds", max_ttl_s=None,
        visible_to="servers", scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="solo_nodes", key_pattern=keys.solo_nodes(), type="sorted_set",
        entry="node_id", score="heartbeat_at", fields=["node_id", "heartbeat_at"],
        purpose="Which signaling nodes route calls only among their own devices, so that each "
                "warns when another node shares its store.",
        retention="while the node runs, then 60 seconds", max_ttl_s=None,
        visible_to="servers", scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="media_nodes", key_pattern=keys.media_nodes(), type="hash", entry="node_id",
        fields=["node_id", "id", "url", "rooms", "participants", "max_rooms", "started_at",
                "seen_at", "draining", "workers"],
        purpose="Which media nodes (SFUs) are alive and how loaded, to place each new room: "
                "one field per node id, holding its control URL, load (per worker process too) "
                "and heartbeat time.",
        retention="while the node runs, then 60 seconds", max_ttl_s=None,
        visible_to="servers", scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="node_calls", key_pattern=keys.node_calls("{node_id}"), type="set",
        entry="call_id", fields=["call_id"],
        purpose="The calls a node runs, so another node can take them over if it dies.",
        retention="while the calls run, then at most 10 seconds",
        max_ttl_s=keys.CALL_RECORD_TTL_S, visible_to="servers", scope="ephemeral",
        in_export=False, export="Not exported: gone seconds after the call."),
    Datum(
        name="live_call", key_pattern=keys.call_record("{call_id}"), type="hash",
        fields=["v", "owner", "state"],
        purpose="A live call's state, so any node can continue it when its node dies: `v` "
                "its version, `owner` the node running it, `state` the call machine: call id, "
                "media, phase, relay_only, sfu, reachable, the account and device ids of the "
                "parties and of the devices it rings, ring and resume deadlines, the SFU room's "
                "media node; for a group call the host's and the invited account ids and each "
                "participant's device id, participant id, mute and publish state and its "
                "device's public keys (device key, media key and its signature, for the "
                "roster). No handle and "
                "no display name: a node that takes the call over reads them from the account "
                "records. Written only with CALLBOOK_ROUTING=redis (the default with REDIS_URL); "
                "a node on the embedded store keeps calls in memory only.",
        retention="while the call runs, then at most 10 seconds; a store with an append-only "
                  "file keeps each write in it until the file's next rewrite",
        max_ttl_s=keys.CALL_RECORD_TTL_S, visible_to="servers", scope="ephemeral",
        in_export=False, export="Not exported: gone seconds after the call."),
    Datum(
        name="ringing_between", key_pattern=keys.ringing_pair(_ACCOUNT, _ACCOUNT),
        type="hash", entry="call_id", fields=["call_id", "c", "o", "d"],
        purpose="The calls ringing between two accounts, so two people calling each other at "
                "once through different server nodes end up in one call (glare): `c` the "
                "caller's account id, `o` the node running the call, `d` its ring deadline.",
        retention="while the call rings, then at most the ring timeout + 10 seconds",
        max_ttl_s=keys.DEFAULT_RING_TIMEOUT_S + keys.RINGING_MARGIN_S, visible_to="servers",
        scope="ephemeral", in_export=False,
        export="Not exported: gone when the call stops ringing."),
    Datum(
        name="node_summary", key_pattern=keys.node_summary("{node_id}"), type="string",
        fields=["nodes", "calls"],
        purpose="What the operator API shows of a node's live calls, so any node lists all: "
                "the nodes (id, version, connections, calls) and live calls with participants "
                "by per-call pseudonym only.",
        retention="rewritten every second while the node runs, then at most 5 seconds",
        max_ttl_s=keys.SUMMARY_TTL_S, visible_to="operators (pseudonymised)",
        scope="server", in_export=False, export="Not exported: pseudonyms only."),
    Datum(
        name="handle_digests_migrated", type="string", key_pattern=keys.handle_digests_migrated(),
        fields=["done"], purpose="That the one-time start-up migration to keyed handle "
                                 "digests has run on this store.",
        retention="permanent, no personal data", max_ttl_s=None, visible_to="servers",
        scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="erasures_counted", type="string", key_pattern=keys.erasures(), fields=["count"],
        purpose="How many accounts were erased, so the store's files get rewritten without "
                "them; a number, no id.",
        retention="permanent, no personal data", max_ttl_s=None, visible_to="servers",
        scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="erasures_rewritten", type="string", key_pattern=keys.erasures_rewritten(),
        fields=["count"],
        purpose="How many of those erasures a finished rewrite of the store's files covers.",
        retention="permanent, no personal data", max_ttl_s=None, visible_to="servers",
        scope="server", in_export=False,
        export="Not exported: no personal data."),
    Datum(
        name="rewrite_lease", type="string", key_pattern=keys.rewrite_lease(), fields=["node_id"],
        purpose="Which node rewrites the store's files now, so nodes do not each rewrite.",
        retention="while the rewrite runs, at most 10 minutes",
        max_ttl_s=keys.REWRITE_LEASE_S, visible_to="servers", scope="server", in_export=False,
        export="Not exported: no personal data."),
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
