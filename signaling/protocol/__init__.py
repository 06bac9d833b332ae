"""Callbook's wire protocol: every definition a client and the server share (docs/sdk.md).

``messages`` (the call WebSocket), ``bodies`` (REST requests and answers), ``records`` (the
address book's records as clients see them), ``operator`` (the operator API), ``problems``
(problem codes), ``closes`` (subprotocol and close codes), ``signing`` (what a device signs),
``puzzles`` (sign-up puzzles), ``handles`` (how handles compare). It imports the standard
library and ``msgspec`` only; ``docs/openapi.json`` and ``docs/asyncapi.json`` are generated
from it.
"""
