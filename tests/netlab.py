"""A network lab: hosts in Linux network namespaces, joined by veth pairs through routers that
NAT, firewall, drop or throttle, so calls meet the networks real people are on.

Every address is in 198.18.0.0/15 (reserved for benchmarking networks) and lives only in the
namespaces a lab creates; ``Lab.close`` deletes them (their veths and iptables rules go with
them), and the ``netlab`` fixture calls it even when the test fails. Names carry a per-run
prefix, so parallel runs never collide, and leftovers of a killed run are swept at the next start.

Public links are 198.18.<n>.0/24 (router .1, downstream .2), private ones behind a NAT
198.19.<n>.0/24. A process runs inside a host with ``Host.spawn`` (``ip netns exec``); a
coroutine with ``Host.run``, on an event loop whose thread entered the host's namespace, so the
sockets it opens (aiohttp's, aioice's) are that host's.

The kernel here has no ``netem``: loss comes from iptables' ``statistic`` match, caps from
``tc tbf``; delay is left out.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aioice.ice
import pytest

T = TypeVar("T")
NatKind = Literal["cone", "symmetric"]

_CLONE_NEWNET = 0x40000000
#: Namespaces of one run: ``cbl<pid>x<random>-<name>``; the pid lets a later run sweep them.
_PREFIX = re.compile(r"^cbl(\d+)x[0-9a-f]+-")


class LabUnavailable(Exception):
    """Why the lab cannot be built on this machine (the tests skip with it)."""


def _sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def unavailable() -> str | None:
    """None when namespaces, veths and iptables' NAT work here; else the reason they don't."""
    if os.geteuid() != 0:
        return "the network lab needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"the network lab needs `{tool}` (Debian: iproute2, iptables)"
    probe = f"cbl{os.getpid()}x{uuid.uuid4().hex[:6]}-probe"
    try:
        _sh("ip", "netns", "add", probe)
        _sh("ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"the network lab cannot be built here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def sweep_leftovers() -> None:
    """Delete the namespaces of lab runs whose process is gone (a killed run's)."""
    for line in _sh("ip", "netns", "list").splitlines():
        name = line.split(" ", 1)[0]
        match = _PREFIX.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


class _NamespaceLoop:
    """An event loop on a thread that entered a network namespace."""

    def __init__(self, namespace: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._namespace = namespace
        self._entered: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name=namespace, daemon=True)
        self._thread.start()
        self._entered.result(timeout=10)

    def _main(self) -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            fd = os.open(f"/run/netns/{self._namespace}", os.O_RDONLY)
            try:
                # Per thread: the sockets this thread (and threads it starts) opens are the host's.
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
        except OSError as exc:
            self._entered.set_exception(exc)
            return
        self._entered.set_result(None)
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def _shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(_shutdown(), self.loop)
        self._thread.join(timeout=15)
        if not self.loop.is_running():
            self.loop.close()


@dataclass
class Host:
    """A network namespace: a device, a server, or a router."""

    lab: Lab
    name: str
    namespace: str
    #: Its address on the link towards its router (the first link it was given).
    address: str = ""
    #: The interface its default route leaves through.
    uplink: str = ""
    _loop: _NamespaceLoop | None = None
    _interfaces: itertools.count[int] = field(default_factory=lambda: itertools.count())

    def sh(self, *argv: str) -> str:
        """Run a command inside the host; raises with its stderr when it fails."""
        return _sh("ip", "netns", "exec", self.namespace, *argv)

    def command(self, *argv: str) -> list[str]:
        """``argv`` prefixed to run inside this host (for Popen and friends)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    async def spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """Start a process inside the host; the lab kills it on close if it still runs."""
        process = await asyncio.create_subprocess_exec(*self.command(*argv), **kwargs)
        self.lab.processes.append(process)
        return process

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` on this host's own event loop (its sockets are the host's)."""
        if self._loop is None:
            self._loop = _NamespaceLoop(self.namespace)
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(coroutine, self._loop.loop)
        )

    def next_interface(self) -> str:
        return f"v{next(self._interfaces)}"

    # --- a device that changes networks --------------------------------------------------------

    def renumber(self, address: str) -> None:
        """Its network gives it another address (a new lease): the old one, and every socket
        bound to it, is gone at once."""
        gateway = self.address.rsplit(".", 1)[0] + ".1"
        self.sh("ip", "addr", "flush", "dev", self.uplink)
        self.sh("ip", "addr", "add", f"{address}/24", "dev", self.uplink)
        self.sh("ip", "route", "replace", "default", "via", gateway)
        self.address = address

    def switch(self, take: Link) -> None:
        """It leaves its network for the one behind ``take`` (Wi-Fi to mobile data: another
        interface, another router, another NAT): its old address gone, ``take``'s taken."""
        self.sh("ip", "addr", "flush", "dev", self.uplink)
        self.sh("ip", "addr", "replace", f"{take.down_address}/24", "dev", take.down)
        self.sh("ip", "route", "replace", "default", "via", take.up_address)
        self.address, self.uplink = take.down_address, take.down

    # --- what a router does to the traffic it forwards -------------------------------------

    def nat(self, wan: str, kind: NatKind) -> None:
        """NAT everything leaving through ``wan`` and refuse what nobody inside asked for.
        ``cone``: one mapping per inside socket, whoever it talks to (endpoint-independent);
        ``symmetric``: a new random port per destination, so srflx candidates are useless."""
        masquerade = ["-j", "MASQUERADE"] + (["--random-fully"] if kind == "symmetric" else [])
        self.sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, *masquerade)
        # INPUT too: an unanswered datagram to the router itself must leave no conntrack entry,
        # or the mapping a device makes next to that peer gets another port (hole punching
        # through a cone NAT would then fail as through a symmetric one).
        for chain in ("FORWARD", "INPUT"):
            self.sh("iptables", "-A", chain, "-i", wan, "-m", "conntrack", "--ctstate",
                    "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
            self.sh("iptables", "-A", chain, "-i", wan, "-j", "DROP")

    def one_to_one(self, wan: str, public: str, private: str) -> None:
        """A cloud's 1:1 NAT: ``public`` is ``private``'s, every port, both ways; no filter."""
        self.sh("iptables", "-t", "nat", "-A", "PREROUTING", "-i", wan, "-d", public,
                "-j", "DNAT", "--to-destination", private)  # fmt: skip
        self.sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-s", private,
                "-j", "SNAT", "--to-source", public)  # fmt: skip

    def block_udp(self) -> None:
        """A firewall that lets no UDP through (TCP only: TURN over TCP is the way out)."""
        self.sh("iptables", "-I", "FORWARD", "-p", "udp", "-j", "DROP")

    def loss(self, interface: str, probability: float, incoming: bool = False) -> list[str]:
        """Drop this share of the UDP datagrams forwarded out through ``interface`` (or in
        through it); returns the rule, for ``restore``."""
        rule = ["FORWARD", "-i" if incoming else "-o", interface, "-p", "udp", "-m", "statistic",
                "--mode", "random", "--probability", f"{probability:g}", "-j", "DROP"]  # fmt: skip
        self.sh("iptables", "-I", *rule)
        return rule

    def restore(self, rule: list[str]) -> None:
        self.sh("iptables", "-D", *rule)

    def dropped(self) -> int:
        """Datagrams the rules made by ``loss`` have dropped so far, together."""
        listing = self.sh("iptables", "-L", "FORWARD", "-v", "-x", "-n")
        return sum(
            int(line.split()[0])
            for line in listing.splitlines()
            if "statistic" in line and "DROP" in line
        )

    def cap(self, interface: str, kbit_s: int) -> None:
        """A bandwidth cap on what leaves through ``interface`` (a token bucket)."""
        self.sh("tc", "qdisc", "replace", "dev", interface, "root", "tbf", "rate",
                f"{kbit_s}kbit", "burst", "16kb", "latency", "200ms")  # fmt: skip


@dataclass(frozen=True)
class Link:
    up: str  # the router's interface
    down: str  # the downstream host's interface
    up_address: str
    down_address: str


class Lab:
    def __init__(self) -> None:
        self.prefix = f"cbl{os.getpid()}x{uuid.uuid4().hex[:6]}-"
        self.hosts: list[Host] = []
        self.processes: list[asyncio.subprocess.Process] = []
        self._public = itertools.count(1)
        self._private = itertools.count(1)

    def host(self, name: str, router: bool = False) -> Host:
        namespace = self.prefix + name
        _sh("ip", "netns", "add", namespace)
        host = Host(self, name, namespace)
        self.hosts.append(host)
        host.sh("ip", "link", "set", "lo", "up")
        if router:
            host.sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        return host

    def link(self, router: Host, host: Host, private: bool = False) -> Link:
        """A veth pair from ``router`` to ``host``, whose default route goes through it."""
        n = next(self._private if private else self._public)
        if n > 254:
            raise RuntimeError("the lab ran out of /24s")
        net = f"198.{19 if private else 18}.{n}"
        up, down = router.next_interface(), host.next_interface()
        _sh("ip", "-n", router.namespace, "link", "add", up, "type", "veth",
            "peer", "name", down, "netns", host.namespace)  # fmt: skip
        router.sh("ip", "addr", "add", f"{net}.1/24", "dev", up)
        host.sh("ip", "addr", "add", f"{net}.2/24", "dev", down)
        router.sh("ip", "link", "set", up, "up")
        host.sh("ip", "link", "set", down, "up")
        if not host.address:
            host.sh("ip", "route", "add", "default", "via", f"{net}.1")
            host.address, host.uplink = f"{net}.2", down
        return Link(up, down, f"{net}.1", f"{net}.2")

    # --- the usual shapes --------------------------------------------------------------------

    def internet(self) -> Host:
        """The router every public host and every NAT's outside hangs off."""
        return self.host("inet", router=True)

    def behind_nat(self, internet: Host, name: str, kind: NatKind = "cone") -> tuple[Host, Host]:
        """A device behind its own home router: (device, router)."""
        router = self.host(f"{name}-nat", router=True)
        wan = self.link(internet, router)
        self.link(router, device := self.host(name), private=True)
        router.nat(wan.down, kind)
        return device, router

    async def close(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
        for host in self.hosts:
            if host._loop is not None:
                await asyncio.to_thread(host._loop.close)
        await asyncio.to_thread(self._delete_namespaces)

    def _delete_namespaces(self) -> None:
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)
        self.hosts.clear()


def lab_hosts_left(lab: Lab) -> Iterator[str]:
    """Namespaces of this lab still present (none after ``close``)."""
    listing = _sh("ip", "netns", "list")
    return (line.split(" ", 1)[0] for line in listing.splitlines() if line.startswith(lab.prefix))


_REASON: list[str | None] = []


def lab_reason() -> str | None:
    if not _REASON:
        _REASON.append(unavailable())
        if _REASON[0] is None:
            sweep_leftovers()
    return _REASON[0]


@pytest.fixture
async def netlab(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh lab per test; skips (with the reason) where namespaces or iptables are missing."""
    reason = lab_reason()
    if reason is not None:
        pytest.skip(reason)
    # Devices in the lab gather as on a real network: without the loopback candidate that
    # earlier loopback-only tests add to aioice in this process (media.server.allow_loopback_ice).
    gather = aioice.ice.get_host_addresses
    monkeypatch.setattr(aioice.ice, "get_host_addresses", getattr(gather, "__wrapped__", gather))
    lab = Lab()
    try:
        yield lab
    finally:
        await lab.close()
