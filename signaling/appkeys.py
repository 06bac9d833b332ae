"""Typed keys for the state an application shares between handlers."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

from aiohttp import web

from directory.store import Store
from signaling.calls.service import CallService
from signaling.config import Config
from signaling.limits import Throttle
from signaling.metrics import Metrics
from signaling.tokens import TokenService


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
CALLS = web.AppKey("calls", CallService)
METRICS = web.AppKey("metrics", Metrics)
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
NODE = web.AppKey("node", NodeInfo)
STREAMS = web.AppKey("streams", set[asyncio.Task[None]])
