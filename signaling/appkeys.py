"""Typed keys for the state an application shares between handlers."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

from aiohttp import web

from directory.store import Store
from signaling.calls.service import CallService
from signaling.cluster.outage import StoreOutage
from signaling.config import Config
from signaling.gate import Gate
from signaling.limits import Throttle
from signaling.metrics import Metrics
from signaling.tokens import TokenService
from signaling.webhooks.sink import StreamSink
from signaling.ws.reconnects import ReconnectThrottle


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    version: str
    started_at: float


CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", TokenService)
ENROLL_THROTTLE = web.AppKey("enroll_throttle", Throttle)
SIGNIN_THROTTLE = web.AppKey("signin_throttle", Throttle)
#: Per-source budgets and client puzzles for the endpoints anyone may call.
GATE = web.AppKey("gate", Gate)
#: How often each device may open the call WebSocket (signaling/ws/reconnects.py).
RECONNECTS = web.AppKey("reconnects", ReconnectThrottle)
CALLS = web.AppKey("calls", CallService)
METRICS = web.AppKey("metrics", Metrics)
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
NODE = web.AppKey("node", NodeInfo)
#: Set only when lifecycle webhooks are configured.
WEBHOOK_SINK = web.AppKey("webhook_sink", StreamSink)
STREAMS = web.AppKey("streams", set[asyncio.Task[None]])
#: This node's view of store outages (one warning each; liveness judgement waits them out).
STORE_OUTAGE = web.AppKey("store_outage", StoreOutage)
