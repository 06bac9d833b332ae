"""The deployment secret keys the handle digests (issue 12, finding 8) and seals the token
signing keys at rest (finding 10); data written before it existed is migrated at start-up."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
from pathlib import Path

import msgspec
import pytest

from directory import keyring, lookup, migrations
from directory.records import SigningKey, StoredSigningKey
from directory.secret import DeploymentSecret, SecretError, embedded
from directory.storage import keys
from directory.store import Store
from signaling import cli
from signaling.config import ConfigError, from_env
from signaling.tokens import _new_key
from tests.conftest import TEST_SECRET, TEST_SECRET_TEXT, Server

OTHER = DeploymentSecret.from_text("another-deployment-" + "7a" * 16, "tests")


def _unkeyed(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()[:32]


async def _all_keys(store: Store) -> list[str]:
    return [key async for key in store.redis.scan_iter(count=500)]


# --- finding 8: handle digests ------------------------------------------------------------------


async def test_no_key_name_can_be_checked_against_a_guessed_handle(
    server: Server, store: Store
) -> None:
    await server.signup("guessable")
    names = await _all_keys(store)
    assert not [key for key in names if _unkeyed("guessable") in key]
    assert await store.redis.get(keys.handle_key(store.handle_digest("guessable")))


def test_the_digest_depends_on_the_secret() -> None:
    preimage = keys.handle_preimage("alice")
    assert TEST_SECRET.digest(preimage) != OTHER.digest(preimage)
    assert TEST_SECRET.digest(preimage) == TEST_SECRET.digest(preimage)
    assert TEST_SECRET.digest_key != TEST_SECRET.sealing_key  # one subkey per use


async def test_handle_keys_of_an_earlier_version_are_rekeyed_with_their_ttls(
    server: Server, store: Store
) -> None:
    viewer = await server.signup("viewer")
    owner = await server.signup("still_here")
    assert owner.profile is not None
    # What an earlier version left: an owned handle, a quarantined one (its name is known to
    # nobody any more), a banned one, and a recovery-attempt bucket.
    owned = f"cb:{{h:{_unkeyed('still_here')}}}:handle"
    quarantined = f"cb:{{h:{_unkeyed('gone_person')}}}:handle"
    banned = f"cb:{{h:{_unkeyed('banned_person')}}}:handle"
    bucket = f"cb:{{h:{_unkeyed('still_here')}}}:rl:recovery"
    await store.redis.delete(keys.handle_key(store.handle_digest("still_here")))
    await store.redis.set(owned, owner.profile.account_id)
    await store.redis.set(quarantined, keys.QUARANTINED, ex=3600)
    await store.redis.set(banned, keys.QUARANTINED)
    await store.redis.hset(bucket, mapping={"tokens": "2", "ts": "1"})
    await store.redis.expire(bucket, 600)
    await store.redis.delete(keys.handle_digests_migrated())

    # Several nodes starting at once run it together.
    await asyncio.gather(*(migrations.run(store) for _ in range(3)))

    names = await _all_keys(store)
    assert not [key for key in names if key.startswith("cb:{h:")]
    moved = {
        "still_here": keys.handle_key(store.handle_digest("still_here")),
        "gone_person": keys.handle_key(store.handle_digest("gone_person")),
        "banned_person": keys.handle_key(store.handle_digest("banned_person")),
    }
    assert await store.redis.get(moved["still_here"]) == owner.profile.account_id
    assert await store.redis.persist(moved["still_here"]) == 0  # it had no TTL, still none
    assert await store.redis.get(moved["gone_person"]) == keys.QUARANTINED
    assert 3500 < await store.redis.ttl(moved["gone_person"]) <= 3600
    assert await store.redis.ttl(moved["banned_person"]) == -1
    recovery = keys.recovery_bucket_key(store.handle_digest("still_here"))
    assert await store.redis.hget(recovery, "tokens") == "2"
    assert 0 < await store.redis.ttl(recovery) <= 600
    # The moved keys work: a lookup finds the owner, the quarantine holds the name back.
    assert viewer.profile is not None
    card = await lookup.find(store, viewer.profile.account_id, "still_here")
    assert card.account_id == owner.profile.account_id
    assert await store.redis.get(keys.handle_digests_migrated())
    # Once done, it does not scan again (a later legacy key is not its business).
    await store.redis.set(quarantined, keys.QUARANTINED)
    await migrations.run(store)
    assert await store.redis.exists(quarantined)


# --- finding 10: signing keys at rest -----------------------------------------------------------


async def test_the_stored_signing_keys_are_sealed(server: Server, store: Store) -> None:
    client = await server.signup("token_holder")
    await client.me()  # signed in: the key signs and verifies
    raw = await store.redis.hgetall(keys.signing_keys())
    assert raw
    for kid, value in raw.items():
        assert "private_key" not in value
        stored = msgspec.json.decode(value, type=StoredSigningKey)
        opened = (await keyring.load(store))[0]
        assert opened.kid == kid
        assert opened.private_key not in value
        assert base64.urlsafe_b64decode(opened.private_key) not in base64.b64decode(stored.sealed)


async def test_clear_keys_of_an_earlier_version_are_sealed_once(store: Store) -> None:
    clear = _new_key(store.clock())
    old_form = msgspec.json.encode(
        {"kid": clear.kid, "private_key": clear.private_key, "created_at": clear.created_at}
    ).decode()
    await store.redis.hset(keys.signing_keys(), clear.kid, old_form)
    assert await keyring.load(store) == []  # a clear key is never used as it is

    sealed = await asyncio.gather(*(keyring.seal_clear_keys(store) for _ in range(3)))
    assert sum(sealed) == 1
    value = await store.redis.hget(keys.signing_keys(), clear.kid)
    assert clear.private_key not in value
    assert await keyring.load(store) == [clear]


async def test_a_key_not_sealed_under_this_secret_is_never_used(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone who can write the store cannot plant a key of their own to mint tokens with."""
    planted = _new_key(store.clock())
    elsewhere = Store(store.redis, store.config, secret=OTHER)
    await store.redis.hset(keys.signing_keys(), planted.kid, keyring.seal(elsewhere, planted))
    assert await keyring.load(store) == []
    assert "do not open with this node's deployment secret" in caplog.text
    # A sealed key relabelled with another key id does not open either (the id is bound to it).
    mine = _new_key(store.clock())
    relabelled = keyring.seal(store, mine).replace(mine.kid, "forged")
    await store.redis.hset(keys.signing_keys(), "forged", relabelled)
    assert await keyring.load(store) == []
    ours = SigningKey(kid="ours", private_key=mine.private_key, created_at=mine.created_at)
    await store.redis.hset(keys.signing_keys(), "ours", keyring.seal(store, ours))
    assert await keyring.load(store) == [ours]


# --- the secret itself --------------------------------------------------------------------------


def test_the_embedded_secret_is_generated_private_and_kept(tmp_path: Path) -> None:
    first = embedded(tmp_path)
    path = tmp_path / "secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text().strip()) == 64
    assert embedded(tmp_path) == first
    assert "digest_key" not in repr(first) and path.read_text().strip() not in repr(first)


def test_a_secret_file_others_may_read_is_refused(tmp_path: Path) -> None:
    embedded(tmp_path)
    os.chmod(tmp_path / "secret", 0o644)
    with pytest.raises(SecretError, match="mode 644"):
        embedded(tmp_path)


def test_serve_refuses_a_data_directory_whose_secret_others_may_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("REDIS_URL", "CALLBOOK_SECRET", "CALLBOOK_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "secret").write_text("x" * 64)
    os.chmod(tmp_path / "secret", 0o640)
    # `serve` sets up the process's logging; the suite's (pytest's capture) must come back.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    assert cli.main(["serve", "--data-dir", str(tmp_path), "--port", "0"]) == 1
    assert "others may read the deployment secret" in capsys.readouterr().err


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("short\n")
    os.chmod(tmp_path / "secret", 0o600)
    with pytest.raises(SecretError, match="at least 32"):
        embedded(tmp_path)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"REDIS_URL": "redis://store:6379"}, "REDIS_URL needs the deployment secret"),
        (
            {"CALLBOOK_SECRET": TEST_SECRET_TEXT, "CALLBOOK_SECRET_FILE": "/run/s"},
            "not both",
        ),
        ({"CALLBOOK_SECRET": "too-short"}, "CALLBOOK_SECRET: .* at least 32"),
        ({"CALLBOOK_SECRET_FILE": "/nonexistent/secret"}, "cannot read /nonexistent/secret"),
        ({"CALLBOOK_ERASE_REWRITE_S": "soon"}, "CALLBOOK_ERASE_REWRITE_S must be an integer"),
        ({"CALLBOOK_ERASE_REWRITE_S": "0"}, "CALLBOOK_ERASE_REWRITE_S must be between 1"),
    ],
)
def test_garbage_secret_settings_are_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        from_env(env)


def test_the_secret_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "mounted"
    path.write_text(TEST_SECRET_TEXT + "\n")
    from_file = from_env({"REDIS_URL": "redis://store:6379", "CALLBOOK_SECRET_FILE": str(path)})
    from_var = from_env({"REDIS_URL": "redis://store:6379", "CALLBOOK_SECRET": TEST_SECRET_TEXT})
    assert from_file.secret == from_var.secret == TEST_SECRET
    assert TEST_SECRET_TEXT not in repr(from_var)
    assert from_env({}).secret is None  # the embedded store's data directory provides one
