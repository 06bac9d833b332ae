"""The call WebSocket's framing facts: its subprotocol, message size limit and the close codes
the server sends besides RFC 6455's (docs/protocol.md 11.3 says what each means)."""

from __future__ import annotations

#: Offer it in ``Sec-WebSocket-Protocol`` (with the access token, or sign in with ``auth``).
SUBPROTOCOL = "callbook.v1"
#: A larger message closes the connection (1009).
MAX_MESSAGE_BYTES = 64 * 1024

#: A newer connection of the same device signed in: do not reconnect from this one.
CLOSE_REPLACED = 4000
#: The device was revoked or its account erased: do not reconnect.
CLOSE_REVOKED = 4001
#: An operator closed the connection; the device may sign in and connect again.
CLOSE_OPERATOR = 4002
#: The server is draining and the device did not move in time: connect again and resume.
CLOSE_DRAINING = 4003
