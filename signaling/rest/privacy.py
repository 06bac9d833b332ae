"""What the server stores about people, published for anyone to read."""

from __future__ import annotations

from directory.inventory import INVENTORY
from signaling.protocol.bodies import Inventory
from signaling.rest.framework import Call, wire
from signaling.rest.table import API


@API.route(
    "GET", "/v1/privacy/inventory",
    summary="Every kind of datum the server stores about people, why and for how long",
    tag="privacy", response=Inventory, auth=False,
)  # fmt: skip
async def inventory(call: Call) -> Inventory:
    return wire({"data": INVENTORY}, Inventory)
