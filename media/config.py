"""Settings of one SFU process, from flags with environment fallbacks."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
from dataclasses import dataclass, field

from media.forwarding import DEFAULT_MAX_PARTICIPANTS
from media.ratecap import DEFAULT_AUDIO_KBPS, DEFAULT_VIDEO_KBPS, RateCaps
from media.watchdog import DEFAULT_BOUND_S

SECRET_ENV = "CALLBOOK_MEDIA_SECRET"
LOOPBACK_ENV = "CALLBOOK_MEDIA_LOOPBACK_ICE"
REDIS_ENV = "REDIS_URL"
NODE_ID_ENV = "CALLBOOK_MEDIA_NODE_ID"
ADVERTISE_ENV = "CALLBOOK_MEDIA_ADVERTISE_URL"
ADVERTISE_HOST_ENV = "CALLBOOK_MEDIA_ADVERTISE_HOST"
DRAIN_GRACE_ENV = "CALLBOOK_MEDIA_DRAIN_GRACE_S"

PUBLIC_IP_ENV = "CALLBOOK_MEDIA_PUBLIC_IP"
UDP_PORT_ENV = "CALLBOOK_MEDIA_UDP_PORT"
AUDIO_KBPS_ENV = "CALLBOOK_MEDIA_MAX_AUDIO_KBPS"
VIDEO_KBPS_ENV = "CALLBOOK_MEDIA_MAX_VIDEO_KBPS"
WORKERS_ENV = "CALLBOOK_MEDIA_WORKERS"
WORKER_HANG_ENV = "CALLBOOK_MEDIA_WORKER_HANG_S"
PADDING_PROBES_ENV = "CALLBOOK_MEDIA_PADDING_PROBES"
MAX_WORKERS = 256


@dataclass(frozen=True)
class MediaConfig:
    secret: str
    host: str = "127.0.0.1"
    port: int = 8090
    max_rooms: int = 100
    max_participants: int = DEFAULT_MAX_PARTICIPANTS
    # aioice leaves loopback addresses out of its host candidates; a node bound to loopback
    # (tests, one-machine installs) has nothing else to offer.
    loopback_ice: bool = True
    # With a store: the node registers itself (docs/scaling.md, "Media nodes") under this id,
    # telling signaling to reach its control API at ``advertise_url``.
    redis_url: str | None = None
    #: ``redis_url`` names a Redis Cluster (seed nodes), as for ``callbook serve``.
    redis_cluster: bool = False
    node_id: str = ""
    advertise_url: str = ""
    #: What one publisher may send per track; the excess is dropped and counted.
    caps: RateCaps = field(default_factory=RateCaps)
    #: SIGTERM: how long live rooms may run on (no new ones) before the node stops
    #: (media/drain.py); as the signaling nodes' CALLBOOK_DRAIN_GRACE_S.
    drain_grace_s: float = 40.0

    #: Behind a 1:1 NAT: the public address its ICE candidates name (media/nat.py).
    public_ip: str | None = None
    #: A listening socket inherited from the launcher (media/embedded.py), served instead of
    #: binding ``host``:``port``.
    listen_fd: int | None = None
    #: Worker processes that run the rooms (media/workers.py); 0: the rooms run in this
    #: process, as ``create_app`` does in tests and the SFU ``callbook serve`` embeds.
    workers: int = 0
    #: The one UDP port of every connection's ICE (media/udpmux.py); 0: a free one, picked at
    #: start; None ("off"): aioice's own ephemeral socket per connection, as before issue 15.
    udp_port: int | None = 0
    #: A worker process that answers none of the node's stats polls this long is killed and
    #: restarted, its rooms lost (media/watchdog.py).
    worker_hang_s: float = DEFAULT_BOUND_S
    #: Padding probes to raise a subscriber's estimate to its next simulcast layer
    #: (media/probing.py). Off by default: in the network lab a capped subscriber climbed back
    #: slower with them than with layer trials alone (docs/benchmarks.md, "Simulcast").
    padding_probes: bool = False

    @property
    def ice_ipv6(self) -> bool:
        """ICE over IPv6 as well: ``host`` is an IPv6 address (``::``: dual-stack)."""
        return is_ipv6(self.host)


def cores() -> int:
    """The cores this process may run on (its affinity, which a container's cpuset limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_workers(value: str) -> int:
    """``auto`` (one per core) or a count; 0 runs the rooms in the node process itself."""
    if value.strip().lower() == "auto":
        return cores()
    count = int(value)
    if not 0 <= count <= MAX_WORKERS:
        raise ValueError(f"--workers must be auto or 0-{MAX_WORKERS}")
    return count


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ipv6(host: str) -> bool:
    """A node whose ``--host`` is an IPv6 address (``::`` included: dual-stack) offers ICE on
    its IPv6 addresses as well (media/udpmux.py)."""
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None = None) -> MediaConfig:
    parser = argparse.ArgumentParser(
        prog="callbook-media", description="Callbook SFU: forwards RTP between call participants."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--secret", default=os.environ.get(SECRET_ENV), help=f"or ${SECRET_ENV}")
    parser.add_argument("--max-rooms", type=int, default=100)
    parser.add_argument("--max-participants", type=int, default=DEFAULT_MAX_PARTICIPANTS)
    parser.add_argument(
        "--loopback-ice",
        choices=("auto", "on", "off"),
        default=os.environ.get(LOOPBACK_ENV, "auto"),
        help="offer 127.0.0.1 as an ICE candidate (auto: when --host is loopback)",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get(REDIS_ENV), help=f"register here (or ${REDIS_ENV})"
    )
    parser.add_argument("--node-id", default=os.environ.get(NODE_ID_ENV), help=f"or ${NODE_ID_ENV}")
    parser.add_argument(
        "--advertise-url",
        default=os.environ.get(ADVERTISE_ENV),
        help=f"control URL signaling uses (or ${ADVERTISE_ENV}; default http://HOST:PORT)",
    )
    parser.add_argument(
        "--advertise-host",
        default=os.environ.get(ADVERTISE_HOST_ENV),
        help=f"only the host of that URL (or ${ADVERTISE_HOST_ENV}; e.g. a pod's IP)",
    )
    parser.add_argument(
        "--public-ip",
        default=os.environ.get(PUBLIC_IP_ENV),
        help=f"behind a 1:1 NAT: the public address to announce in ICE candidates (or "
        f"${PUBLIC_IP_ENV})",
    )
    parser.add_argument(
        "--udp-port",
        default=os.environ.get(UDP_PORT_ENV) or "0",
        help=f"the one UDP port all media flows use (or ${UDP_PORT_ENV}; default 0: any free "
        "port; 'off': one ephemeral port per connection)",
    )
    for kind, env, default in (
        ("audio", AUDIO_KBPS_ENV, DEFAULT_AUDIO_KBPS),
        ("video", VIDEO_KBPS_ENV, DEFAULT_VIDEO_KBPS),
    ):
        parser.add_argument(
            f"--max-{kind}-kbps",
            type=int,
            default=os.environ.get(env) or str(default),  # argparse applies type=int
            help=f"cap on one publisher's {kind} track, kbit/s (or ${env}; default {default})",
        )
    parser.add_argument(
        "--drain-grace-s",
        type=int,
        default=os.environ.get(DRAIN_GRACE_ENV) or "40",  # argparse applies type=int
        help=f"on SIGTERM, how long live rooms may run on, 0-3600 s (or ${DRAIN_GRACE_ENV})",
    )
    parser.add_argument(
        "--listen-fd",
        type=int,
        help="serve the control API on this inherited listening socket (--port only names it)",
    )
    parser.add_argument(
        "--workers",
        default=os.environ.get(WORKERS_ENV) or "auto",
        help=f"worker processes running the rooms: auto (one per core, the default), N, or 0 "
        f"for none (rooms in this process) (or ${WORKERS_ENV})",
    )
    parser.add_argument(
        "--worker-hang-s",
        type=float,
        default=os.environ.get(WORKER_HANG_ENV) or str(DEFAULT_BOUND_S),
        help=f"kill and restart a worker process that answers nothing this long, 2-3600 s (or "
        f"${WORKER_HANG_ENV}; default {DEFAULT_BOUND_S:g})",
    )
    parser.add_argument(
        "--padding-probes",
        choices=["on", "off"],
        default=os.environ.get(PADDING_PROBES_ENV) or "off",
        help=f"pad subscribers' RTX streams so their estimate can reach the next simulcast "
        f"layer (or ${PADDING_PROBES_ENV}; default off)",
    )
    args = parser.parse_args(argv)
    try:
        workers = parse_workers(args.workers)
    except ValueError:
        parser.error(f"--workers must be auto or a number 0-{MAX_WORKERS}")
    if not args.secret:
        parser.error(f"a control secret is required (--secret or ${SECRET_ENV})")
    if args.max_rooms < 1 or args.max_participants < 2:
        parser.error("--max-rooms must be >= 1 and --max-participants >= 2")
    if not 0 <= args.drain_grace_s <= 3600:
        parser.error("--drain-grace-s must be between 0 and 3600")
    if args.max_audio_kbps < 8 or args.max_video_kbps < 8:
        parser.error("--max-audio-kbps and --max-video-kbps must be >= 8")
    if not 2 <= args.worker_hang_s <= 3600:
        parser.error("--worker-hang-s must be between 2 and 3600")
    if args.public_ip and not _is_address(args.public_ip):
        parser.error("--public-ip must be an IP address")
    udp_port = _udp_port(args.udp_port)
    if udp_port == -1:
        parser.error("--udp-port must be 0-65535 or 'off'")
    loopback = is_loopback(args.host) if args.loopback_ice == "auto" else _flag(args.loopback_ice)
    return MediaConfig(
        secret=args.secret,
        host=args.host,
        port=args.port,
        max_rooms=args.max_rooms,
        max_participants=args.max_participants,
        loopback_ice=loopback,
        redis_url=args.redis_url or None,
        redis_cluster=os.environ.get("CALLBOOK_REDIS_CLUSTER") == "1",
        node_id=args.node_id or f"media-{secrets.token_hex(4)}",
        advertise_url=_advertise_url(
            args.advertise_url, args.advertise_host or args.host, args.port
        ),
        caps=RateCaps(args.max_audio_kbps, args.max_video_kbps),
        drain_grace_s=float(args.drain_grace_s),
        public_ip=args.public_ip or None,
        listen_fd=args.listen_fd,
        workers=workers,
        udp_port=udp_port,
        worker_hang_s=args.worker_hang_s,
        padding_probes=args.padding_probes == "on",
    )


def _udp_port(value: str) -> int | None:
    """None for 'off', -1 for nonsense."""
    if value.strip().lower() == "off":
        return None
    try:
        port = int(value)
    except ValueError:
        return -1
    return port if 0 <= port <= 65535 else -1


def _advertise_url(url: str | None, host: str, port: int) -> str:
    """Where signaling reaches this node's control API: as given, or built from host and port."""
    return (url or f"http://{host}:{port}").rstrip("/")
