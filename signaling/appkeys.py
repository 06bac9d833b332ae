"""Typed keys for the state an application shares between handlers."""

from __future__ import annotations

from aiohttp import web

from directory.store import Store
from signaling.config import Config
from signaling.limits import Throttle
from signaling.tokens import TokenService

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", TokenService)
ANONYMOUS_THROTTLE = web.AppKey("anonymous_throttle", Throttle)
