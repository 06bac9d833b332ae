"""Server configuration: defaults, overridden by environment variables, overridden by flags."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from directory import disk
from directory.secret import DeploymentSecret, SecretError, read_file
from directory.storage import keys
from directory.store import DirectoryConfig
from signaling.limits import Budget, Networks
from signaling.push.settings import (
    ApnsSettings,
    FcmSettings,
    PushSettingsError,
    apns_from_env,
    fcm_from_env,
)
from signaling.puzzle import Settings as PuzzleSettings

#: The UDP port of ``stun:`` URIs by default (RFC 5389, section 18.4).
STUN_PORT = 3478


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("callbook-data")
    redis_url: str | None = None
    #: ``redis_url`` names a Redis Cluster: one or more comma-separated seed nodes.
    redis_cluster: bool = False
    #: Keys the handle digests and seals the signing keys (directory/secret.py); shared by every
    #: node. ``callbook serve`` with the embedded store generates one in ``data_dir``.
    secret: DeploymentSecret | None = field(default=None, repr=False)
    #: How often a node checks whether erasures await a rewrite of the store's files.
    erase_rewrite_s: float = disk.DEFAULT_INTERVAL_S
    token_ttl_s: int = keys.ACCESS_TOKEN_TTL_S
    key_rotation_s: int = keys.SIGNING_KEY_ROTATION_S
    max_body_bytes: int = 16 * 1024
    #: A new connection's first request head must be complete within this long.
    header_timeout_s: float = 10.0
    #: A connection idle this long after its last response is closed (a call WebSocket is kept by
    #: its pings instead). Above the upstream keep-alive of the usual proxies (ingress-nginx and
    #: cloud load balancers: 60 s), so that they close first and never reuse a closing one.
    idle_timeout_s: float = 75.0
    #: Connections one address (an IPv6 /64) may hold open at once; 0: no cap. Counted in memory
    #: only. Every device holds one call WebSocket, so this is also how many devices behind one
    #: NAT can be online. Behind a reverse proxy every connection comes from the proxy: set 0.
    max_connections_per_source: int = 256
    #: Browser origins, besides the server's own, allowed to open the call WebSocket.
    allowed_origins: tuple[str, ...] = ()
    turn_uris: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_s: int = 3600
    #: The UDP port of the built-in STUN server (signaling/stun.py) on ``host``; None: off, 0:
    #: any free port (tests). ``callbook serve`` runs it on 3478 unless CALLBOOK_STUN_PORT=0.
    stun_port: int | None = None
    #: The host devices are told to send STUN to; unset: the host they reach this server by.
    stun_host: str | None = None
    ring_timeout_s: float = 60.0
    resume_window_s: float = 30.0
    resume_queue_max: int = 256
    #: The media node (SFU) control API; ``callbook serve`` starts its own when unset.
    media_url: str | None = None
    media_secret: str | None = None
    #: Several media nodes found in the store's registry instead of one at ``media_url``.
    media_registry: bool = False
    #: One connection per participant through the SFU (docs/protocol.md 11.15.2). Off: a
    #: ``publish`` with ``bundle: true`` is refused as a server from before it refused it
    #: (``invalid_message``, naming no call), and clients fall back to a connection per sender.
    sfu_bundle: bool = True
    push_webhook_url: str | None = None
    push_webhook_secret: str | None = None
    #: Sending VoIP pushes to APNs and data messages to FCM ourselves (signaling/push).
    apns: ApnsSettings | None = None
    fcm: FcmSettings | None = None
    #: The first wait before retrying a push provider (doubled per attempt, 3 attempts).
    push_backoff_s: float = 0.5
    #: Lifecycle webhooks (signaling/webhooks): where to POST call events, and how hard to try.
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_max_attempts: int = 12
    webhook_retention_s: int = keys.DEFAULT_WEBHOOK_RETENTION_S
    webhook_backoff_s: float = 1.0
    webhook_backoff_max_s: float = 300.0
    webhook_timeout_s: float = 10.0
    webhook_lease_s: float = keys.WEBHOOK_LEASE_TTL_S
    webhook_poll_s: float = 1.0
    # Node-wide: sign-ups and recoveries (argon2id each), and sign-in challenges.
    enroll_rate_per_s: float = 50.0
    enroll_burst: int = 100
    signin_rate_per_s: float = 500.0
    signin_burst: int = 1000
    # Per connection source address, in memory only: a flood from one source spends its own
    # budget, not everyone's (the node-wide limits above then stay for the others).
    source_signups: Budget = field(default_factory=lambda: Budget(10, 60 / 3600))
    source_recoveries: Budget = field(default_factory=lambda: Budget(10, 30 / 3600))
    source_challenges: Budget = field(default_factory=lambda: Budget(100, 5.0))
    #: Every ``rate_limited`` answer is held back this long at most (signaling/gate.py).
    tarpit_s: float = 1.0
    #: Reverse proxies whose ``X-Forwarded-For`` names the client (the source of 3.6).
    trusted_proxies: Networks = ()
    #: Sources remembered at once (least recently seen forgotten first): bounds the memory.
    source_table_size: int = 16384
    #: Client puzzles on sign-up and recovery; ``max_bits`` 0 turns them off.
    puzzle: PuzzleSettings = field(default_factory=PuzzleSettings)
    #: Node-wide sign-ups and recoveries per second under which nobody is asked for work.
    puzzle_quiet_per_s: float = 1.0
    #: Tokens of its own sign-up or recovery budget a source spends before it gets puzzles.
    puzzle_source_quiet: float = 2.0
    #: argon2 (recovery codes) runs on this many threads, with at most this many waiting.
    argon2_workers: int = max(1, (os.cpu_count() or 2) // 2)
    argon2_queue: int = 16
    #: Per device, in memory: call WebSocket sign-ins at once, then one per this many seconds.
    reconnect_burst: int = 6
    reconnect_every_s: float = 2.0
    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    #: This node's name in the operator view; a random one per process when unset.
    node_id: str | None = None
    #: ``local``: this node alone; ``redis``: one of several nodes on the same store, reaching
    #: devices connected to the others (docs/scaling.md). Chosen once, at start-up; from the
    #: environment, ``redis`` whenever REDIS_URL names a store others may share.
    routing: Literal["local", "redis"] = "local"
    #: SIGTERM: how long devices get to move to another node before the server stops. The
    #: default fits Kubernetes' terminationGracePeriodSeconds (60) after the preStop sleep (5)
    #: and the server's own shutdown (SHUTDOWN_GRACE_S, 10), with room to spare.
    drain_grace_s: float = 40.0


class ConfigError(ValueError):
    pass


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, not {raw!r}.") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}.")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """Read the CALLBOOK_* variables (and REDIS_URL); see the README's configuration table."""
    env = os.environ if env is None else env
    base = Config()
    young = _int(env, "CALLBOOK_YOUNG_LOOKUPS_PER_MINUTE", 5, 1, 100_000)
    young_store = _int(env, "CALLBOOK_YOUNG_LOOKUPS_STORE_PER_MINUTE", 300, 1, 10_000_000)
    directory = DirectoryConfig(
        handle_quarantine_s=86400 * _int(env, "CALLBOOK_HANDLE_QUARANTINE_DAYS", 30, 0, 3650),
        lookup_burst=_int(env, "CALLBOOK_LOOKUP_BURST", 30, 1, 100_000),
        lookup_refill_per_s=_int(env, "CALLBOOK_LOOKUPS_PER_MINUTE", 30, 1, 1_000_000) / 60,
        report_retention_s=86400 * _int(env, "CALLBOOK_REPORT_RETENTION_DAYS", 180, 1, 3650),
        audit_retention_s=86400 * _int(env, "CALLBOOK_AUDIT_RETENTION_DAYS", 365, 1, 3650),
        young_lookup_burst=young,
        young_lookup_refill_per_s=young / 60,
        young_store_lookup_burst=young_store,
        young_store_lookup_refill_per_s=young_store / 60,
        renames_per_day=_int(env, "CALLBOOK_RENAMES_PER_DAY", 3, 1, 1000),
    )
    origins = _list(env, "CALLBOOK_ALLOWED_ORIGINS")
    turn_uris = _list(env, "CALLBOOK_TURN_URIS")
    turn_secret = env.get("CALLBOOK_TURN_SECRET") or None
    if turn_uris and not turn_secret:
        raise ConfigError(
            "CALLBOOK_TURN_URIS needs CALLBOOK_TURN_SECRET (coturn's static-auth-secret)."
        )
    push_url = env.get("CALLBOOK_PUSH_WEBHOOK_URL") or None
    if push_url and not env.get("CALLBOOK_PUSH_WEBHOOK_SECRET"):
        raise ConfigError(
            "CALLBOOK_PUSH_WEBHOOK_URL needs CALLBOOK_PUSH_WEBHOOK_SECRET to sign with."
        )
    try:
        apns, fcm = apns_from_env(env), fcm_from_env(env)
    except PushSettingsError as exc:
        raise ConfigError(str(exc)) from exc
    webhook_urls = _list(env, "CALLBOOK_WEBHOOK_URLS")
    for url in webhook_urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"CALLBOOK_WEBHOOK_URLS: {url!r} is not an http(s) URL.")
    webhook_secret = env.get("CALLBOOK_WEBHOOK_SECRET") or None
    if webhook_urls and not webhook_secret:
        raise ConfigError("CALLBOOK_WEBHOOK_URLS needs CALLBOOK_WEBHOOK_SECRET to sign with.")
    media_url = env.get("CALLBOOK_MEDIA_URL") or None
    media_secret = env.get("CALLBOOK_MEDIA_SECRET") or None
    if media_url and not media_secret:
        raise ConfigError("CALLBOOK_MEDIA_URL needs CALLBOOK_MEDIA_SECRET (the SFU's --secret).")
    media_registry = _on(env, "CALLBOOK_MEDIA_REGISTRY")
    if media_registry and (media_url or not media_secret):
        raise ConfigError(
            "CALLBOOK_MEDIA_REGISTRY needs CALLBOOK_MEDIA_SECRET (shared by the media nodes) "
            "and no CALLBOOK_MEDIA_URL (the registry says where the nodes are)."
        )
    return replace(
        base,
        erase_rewrite_s=float(_int(env, "CALLBOOK_ERASE_REWRITE_S", 60, 1, 3600)),
        source_signups=Budget(
            base.source_signups.burst,
            _int(env, "CALLBOOK_SOURCE_SIGNUPS_PER_HOUR", 60, 1, 1_000_000) / 3600,
        ),
        source_recoveries=Budget(
            base.source_recoveries.burst,
            _int(env, "CALLBOOK_SOURCE_RECOVERIES_PER_HOUR", 30, 1, 1_000_000) / 3600,
        ),
        source_challenges=Budget(
            base.source_challenges.burst,
            _int(env, "CALLBOOK_SOURCE_CHALLENGES_PER_MINUTE", 300, 1, 1_000_000) / 60,
        ),
        trusted_proxies=_networks(env, "CALLBOOK_TRUSTED_PROXIES"),
        puzzle=replace(base.puzzle, max_bits=_int(env, "CALLBOOK_PUZZLE_MAX_BITS", 18, 0, 24)),
        puzzle_quiet_per_s=_int(env, "CALLBOOK_PUZZLE_QUIET_PER_MINUTE", 60, 1, 1_000_000) / 60,
        argon2_workers=_int(env, "CALLBOOK_ARGON2_WORKERS", base.argon2_workers, 1, 64),
        argon2_queue=_int(env, "CALLBOOK_ARGON2_QUEUE", base.argon2_queue, 0, 10_000),
        media_url=media_url,
        media_secret=media_secret,
        media_registry=media_registry,
        sfu_bundle=_on(env, "CALLBOOK_SFU_BUNDLE", default=base.sfu_bundle),
        allowed_origins=origins,
        turn_uris=turn_uris,
        turn_secret=turn_secret,
        turn_ttl_s=_int(env, "CALLBOOK_TURN_TTL_S", base.turn_ttl_s, 60, 86400),
        stun_port=_int(env, "CALLBOOK_STUN_PORT", STUN_PORT, 0, 65535) or None,
        stun_host=env.get("CALLBOOK_STUN_HOST") or None,
        push_webhook_url=env.get("CALLBOOK_PUSH_WEBHOOK_URL") or None,
        push_webhook_secret=env.get("CALLBOOK_PUSH_WEBHOOK_SECRET") or None,
        apns=apns,
        fcm=fcm,
        webhook_urls=webhook_urls,
        webhook_secret=webhook_secret,
        webhook_max_attempts=_int(env, "CALLBOOK_WEBHOOK_MAX_ATTEMPTS", 12, 1, 100),
        webhook_retention_s=3600 * _int(env, "CALLBOOK_WEBHOOK_RETENTION_HOURS", 72, 1, 72),
        host=env.get("CALLBOOK_HOST", base.host),
        port=_int(env, "CALLBOOK_PORT", base.port, 0, 65535),
        data_dir=Path(env.get("CALLBOOK_DATA_DIR", str(base.data_dir))),
        redis_url=env.get("REDIS_URL") or None,
        redis_cluster=_redis_cluster(env),
        token_ttl_s=_int(env, "CALLBOOK_TOKEN_TTL_S", base.token_ttl_s, 60, 900),
        header_timeout_s=float(_int(env, "CALLBOOK_HEADER_TIMEOUT_S", 10, 1, 300)),
        idle_timeout_s=float(_int(env, "CALLBOOK_IDLE_TIMEOUT_S", 75, 1, 3600)),
        max_connections_per_source=_int(
            env, "CALLBOOK_MAX_CONNECTIONS_PER_SOURCE", 256, 0, 1_000_000
        ),
        directory=directory,
        node_id=env.get("CALLBOOK_NODE_ID") or None,
        routing=_routing(env),
        drain_grace_s=float(_int(env, "CALLBOOK_DRAIN_GRACE_S", int(base.drain_grace_s), 0, 3600)),
        resume_window_s=float(
            _int(env, "CALLBOOK_RESUME_WINDOW_S", int(base.resume_window_s), 1, 3600)
        ),
        # Last: a wrong store setting is the first thing to fix.
        secret=_secret(env),
    )


def _secret(env: Mapping[str, str]) -> DeploymentSecret | None:
    """The deployment secret, from a file or the environment; required with an external
    store, where no data directory exists to generate one in."""
    path, value = env.get("CALLBOOK_SECRET_FILE") or None, env.get("CALLBOOK_SECRET") or None
    if path and value:
        raise ConfigError("Set CALLBOOK_SECRET_FILE or CALLBOOK_SECRET, not both.")
    try:
        if path:
            return read_file(Path(path))
        if value:
            return DeploymentSecret.from_text(value, "CALLBOOK_SECRET")
    except SecretError as exc:
        raise ConfigError(str(exc)) from exc
    if env.get("REDIS_URL"):
        raise ConfigError(
            "REDIS_URL needs the deployment secret every node shares: CALLBOOK_SECRET_FILE (a "
            "file holding it, e.g. a Kubernetes Secret) or CALLBOOK_SECRET; make one with "
            "`openssl rand -hex 32`."
        )
    return None


def _routing(env: Mapping[str, str]) -> Literal["local", "redis"]:
    # A shared store means other nodes may be on it: local routing there rang nowhere across
    # nodes, silently. ``local`` stays the embedded store's (nobody else can reach it).
    raw = env.get("CALLBOOK_ROUTING") or ("redis" if env.get("REDIS_URL") else "local")
    if raw == "local":
        return "local"
    if raw == "redis":
        return "redis"
    raise ConfigError(f"CALLBOOK_ROUTING must be local or redis, not {raw!r}.")


def _redis_cluster(env: Mapping[str, str]) -> bool:
    raw = env.get("CALLBOOK_REDIS_CLUSTER") or "0"
    if raw not in ("0", "1"):
        raise ConfigError(f"CALLBOOK_REDIS_CLUSTER must be 0 or 1, not {raw!r}.")
    if raw == "0":
        return False
    seeds = [u.strip() for u in (env.get("REDIS_URL") or "").split(",") if u.strip()]
    if not seeds:
        raise ConfigError("CALLBOOK_REDIS_CLUSTER=1 needs REDIS_URL: the cluster's seed nodes.")
    for url in seeds:
        if not url.startswith(("redis://", "rediss://")):
            raise ConfigError(
                f"REDIS_URL: a cluster node is reached over TCP (redis:// or rediss://), "
                f"not {url.split('://')[0]}://."
            )
    return True


def _on(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A switch (``default`` when unset): a typo must not silently mean "off"."""
    value = env.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be on or off (1/0, true/false, yes/no), not {value!r}.")


def _networks(env: Mapping[str, str], name: str) -> Networks:
    networks = []
    for item in _list(env, name):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{name}: {item!r} is not an address or a network.") from exc
    return tuple(networks)
