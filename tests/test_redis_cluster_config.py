"""How an operator points Callbook at a Redis Cluster: CALLBOOK_REDIS_CLUSTER=1 and REDIS_URL as
one or more seed nodes; bad settings are refused with a sentence that says what to fix."""

from __future__ import annotations

import aiohttp
import pytest

from directory.storage.connection import connect
from directory.store import Store
from signaling.config import ConfigError, from_env
from signaling.sdk.client import ClientError
from tests.conftest import TEST_SECRET_TEXT, MakeServer
from tests.redis_cluster import EmbeddedCluster, free_port_pair


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"CALLBOOK_REDIS_CLUSTER": "yes", "REDIS_URL": "redis://a:6379"}, "must be 0 or 1"),
        ({"CALLBOOK_REDIS_CLUSTER": "1"}, "needs REDIS_URL"),
        ({"CALLBOOK_REDIS_CLUSTER": "1", "REDIS_URL": "unix:///run/v.sock"}, "over TCP"),
    ],
)
def test_cluster_settings_are_checked(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        from_env(env)


def test_a_password_in_a_refused_url_is_not_repeated() -> None:
    env = {"CALLBOOK_REDIS_CLUSTER": "1", "REDIS_URL": "unix://:hunter2@/run/v.sock"}
    with pytest.raises(ConfigError) as refused:
        from_env(env)
    assert "hunter2" not in str(refused.value)


def test_cluster_settings_from_the_environment() -> None:
    seeds = "redis://10.0.0.1:6379, redis://10.0.0.2:6379"
    secret = {"CALLBOOK_SECRET": TEST_SECRET_TEXT}
    config = from_env({"CALLBOOK_REDIS_CLUSTER": "1", "REDIS_URL": seeds, **secret})
    assert config.redis_cluster and config.redis_url == seeds
    assert not from_env({"REDIS_URL": "redis://10.0.0.1:6379", **secret}).redis_cluster


async def test_any_live_seed_is_enough(redis_cluster: EmbeddedCluster) -> None:
    down = f"redis://127.0.0.1:{free_port_pair()}"  # nothing listens there
    redis = connect(f"{down},{redis_cluster.url}", cluster=True)
    try:
        store = Store(redis)
        assert store.cluster
        await redis.set("cb:{t:seed}:probe", "1", ex=10)
        assert await redis.get("cb:{t:seed}:probe") == "1"
    finally:
        await redis.aclose()


async def test_a_node_whose_cluster_does_not_answer_starts_and_says_unavailable(
    make_server: MakeServer,
) -> None:
    # redis-py reports "no seed answers" with its generic cluster error; the node must treat it
    # as a store outage: start, fail readiness, answer requests with 503 `unavailable`.
    down = f"redis://127.0.0.1:{free_port_pair()}"
    server = await make_server(redis_url=down, redis_cluster=True, routing="local")
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/readyz") as ready:
        assert ready.status == 503
    with pytest.raises(ClientError) as refused:
        await server.client().signup("carol")
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
