"""Every Redis key the project uses, and every TTL, in one place.

Keys of one account carry the account's hash tag (``{a:<id>}``) so that one account's multi-key
changes run as a single MULTI/EXEC on one Redis Cluster slot. Keys that are looked up by something
other than the account id (a handle, a sign-in nonce) carry their own tag; code that touches both
orders its writes so that a crash in between never leaves a dangling reference (see
``accounts.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PREFIX = "cb"

NONCE_TTL_S = 60
DEFAULT_HANDLE_QUARANTINE_S = 30 * 24 * 3600
ACCESS_TOKEN_TTL_S = 10 * 60
SIGNING_KEY_ROTATION_S = 24 * 3600
RATE_LIMIT_IDLE_TTL_S = 3600
MISSED_CALLS_TTL_S = 30 * 24 * 3600

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


def invite_bucket(account_id: str) -> str:
    """Hash: token bucket limiting the calls this account places."""
    return f"{PREFIX}:{account_tag(account_id)}:rl:invite"


def missed_calls(account_id: str) -> str:
    """Sorted set, MISSED_CALLS_TTL_S: missed calls (JSON: caller id and handle), by time."""
    return f"{PREFIX}:{account_tag(account_id)}:missed"


def missed_by(account_id: str) -> str:
    """Set: accounts whose missed-call list names this account as caller (for erase)."""
    return f"{PREFIX}:{account_tag(account_id)}:missed_by"


def push_tokens(account_id: str) -> str:
    """Hash: device id -> JSON push registration (provider, token)."""
    return f"{PREFIX}:{account_tag(account_id)}:push"


def account_keys(account_id: str) -> tuple[str, ...]:
    """Every key that belongs to one account (erase removes exactly these)."""
    return (
        account(account_id),
        devices(account_id),
        contacts(account_id),
        contact_of(account_id),
        blocks(account_id),
        blocked_by(account_id),
        lookup_bucket(account_id),
        invite_bucket(account_id),
        missed_calls(account_id),
        missed_by(account_id),
        push_tokens(account_id),
    )


def _handle_tag(normalized_handle: str) -> str:
    # A digest, not the handle: once an account is erased no key spells out its handle, while
    # the quarantine still holds the name back.
    return "{h:" + hashlib.sha256(normalized_handle.encode()).hexdigest()[:32] + "}"


def handle(normalized_handle: str) -> str:
    """String: account id owning the handle, or QUARANTINED with a TTL."""
    return f"{PREFIX}:{_handle_tag(normalized_handle)}:handle"


def recovery_bucket(normalized_handle: str) -> str:
    """Hash: token bucket limiting recovery attempts for a handle, whether it exists or not."""
    return f"{PREFIX}:{_handle_tag(normalized_handle)}:rl:recovery"


def nonce(value: str) -> str:
    """String with NONCE_TTL_S: a single-use sign-in challenge."""
    return f"{PREFIX}:{{n:{value}}}:nonce"


def signing_keys() -> str:
    """Hash: key id -> JSON server signing key (private key, creation time)."""
    return f"{PREFIX}:{{keyring}}:signing_keys"


def signing_key_newest() -> str:
    """String: creation time of the newest signing key (the rotation guard)."""
    return f"{PREFIX}:{{keyring}}:newest_at"


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """A documented family of keys: what the store may hold, used by tests that scan it."""

    glob: str
    purpose: str


KEY_PATTERNS: tuple[KeyPattern, ...] = (
    KeyPattern(account("*"), "account: handle, display name, created day, settings"),
    KeyPattern(devices("*"), "device public keys, names, created/last-seen days"),
    KeyPattern(contacts("*"), "contacts with private nicknames"),
    KeyPattern(contact_of("*"), "reverse index of contacts, for erase"),
    KeyPattern(blocks("*"), "blocked accounts"),
    KeyPattern(blocked_by("*"), "reverse index of blocks, for erase"),
    KeyPattern(lookup_bucket("*"), "lookup rate limit"),
    KeyPattern(invite_bucket("*"), "call rate limit"),
    KeyPattern(missed_calls("*"), "missed calls, 30 days"),
    KeyPattern(missed_by("*"), "reverse index of missed calls, for erase"),
    KeyPattern(push_tokens("*"), "push registrations per device"),
    KeyPattern(f"{PREFIX}:{{h:*}}:handle", "handle ownership and quarantine"),
    KeyPattern(f"{PREFIX}:{{h:*}}:rl:recovery", "recovery attempt rate limit, per handle"),
    KeyPattern(nonce("*"), "sign-in challenges"),
    KeyPattern(signing_keys(), "server token signing keys"),
    KeyPattern(signing_key_newest(), "creation time of the newest signing key"),
)
