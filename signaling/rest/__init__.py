"""The REST API, ``/v1``: one module per area, all registered on one endpoint table."""

from __future__ import annotations

# Importing an area registers its routes on the table.
from signaling.rest import (  # noqa: F401
    calls,
    devices,
    me,
    operator,
    people,
    privacy,
    reports,
    session,
)
from signaling.rest.framework import Endpoint
from signaling.rest.table import API


def endpoints() -> list[Endpoint]:
    return API.endpoints
