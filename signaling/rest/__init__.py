"""The REST API, ``/v1``: one module per area, all registered on one endpoint table."""

from __future__ import annotations

from signaling.rest import devices, me, people, session
from signaling.rest.framework import Endpoint
from signaling.rest.table import API


def endpoints() -> list[Endpoint]:
    # Importing the modules registered their routes; the names keep the imports meaningful.
    assert session and me and devices and people
    return API.endpoints
