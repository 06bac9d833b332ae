"""What the server stores about people, published for anyone to read."""

from __future__ import annotations

import msgspec

from directory.inventory import INVENTORY, Datum
from signaling.rest.framework import Call
from signaling.rest.table import API


class Inventory(msgspec.Struct, kw_only=True):
    """Every kind of datum in the store: key pattern, fields, purpose, retention, who sees it."""

    data: list[Datum]


@API.route(
    "GET", "/v1/privacy/inventory",
    summary="Every kind of datum the server stores about people, why and for how long",
    tag="privacy", response=Inventory, auth=False,
)  # fmt: skip
async def inventory(call: Call) -> Inventory:
    return Inventory(data=list(INVENTORY))
