"""When a node routing locally warns of others on its store: the pure judgement, and the
default routing read from the environment."""

from __future__ import annotations

import logging

import pytest

from directory.inventory import INVENTORY
from directory.storage import keys
from directory.store import Store
from signaling.cluster.solo import SoloWatch, Watch, others
from signaling.config import from_env
from tests.store_walk import stored_fields

SECRET = {"CALLBOOK_SECRET": "s" * 64}


@pytest.mark.parametrize(
    ("env", "routing"),
    [
        ({}, "local"),  # the embedded store: nobody else can reach it
        ({"REDIS_URL": "redis://valkey:6379", **SECRET}, "redis"),
        ({"REDIS_URL": "redis://valkey:6379", "CALLBOOK_ROUTING": "", **SECRET}, "redis"),
        ({"REDIS_URL": "redis://valkey:6379", "CALLBOOK_ROUTING": "local", **SECRET}, "local"),
        ({"CALLBOOK_ROUTING": "redis"}, "redis"),
    ],
)
def test_a_shared_store_routes_between_nodes_by_default(env: dict[str, str], routing: str) -> None:
    assert from_env(env).routing == routing


def test_others_are_the_live_nodes_but_this_one() -> None:
    beats = [("me", 100.0), ("fresh", 99.0), ("edge", 95.0), ("stale", 94.9)]
    assert others(beats, me="me", now=100.0, dead_after_s=5) == {"fresh", "edge"}


# (alive at this step, time, warns?)
STEPS = [
    (set(), 0.0, False),  # alone
    ({"b"}, 1.0, True),  # b appears
    ({"b"}, 2.0, False),  # said once
    ({"b", "c"}, 3.0, True),  # a new one
    ({"b", "c"}, 62.0, False),  # within the reminder period
    ({"b", "c"}, 63.0, True),  # reminded
    (set(), 64.0, False),  # gone
    ({"b"}, 65.0, True),  # back: new again
]


def test_the_warning_comes_at_each_new_node_and_then_every_minute() -> None:
    watch = Watch(remind_s=60.0)
    for alive, now, warns in STEPS:
        warning = watch.step(frozenset(alive), now)
        assert (warning is not None) is warns, (alive, now)
        if warning is not None:
            assert all(node in warning for node in alive)
            assert "CALLBOOK_ROUTING" in warning


async def test_a_solo_node_beats_in_the_store_and_warns_of_another(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = SoloWatch(store, "solo-first"), SoloWatch(store, "solo-second")
    with caplog.at_level(logging.ERROR, logger="callbook.routing"):
        await first.check()
        assert not caplog.records  # alone
        await second.check()
        await first.check()
    assert [r.getMessage().count("solo-first") for r in caplog.records] == [1, 0]
    assert "solo-second" in caplog.records[1].getMessage()
    datum = next(d for d in INVENTORY if d.name == "solo_nodes")
    assert await stored_fields(store, keys.solo_nodes(), datum) == set(datum.fields)
    await first.close()
    await second.close()
    assert await store.redis.zcard(keys.solo_nodes()) == 0
