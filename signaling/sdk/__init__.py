"""The Python SDK: a Callbook device in Python (docs/sdk.md).

``client`` (REST, the device's profile), ``line`` (the call WebSocket), ``softphone`` (1:1 and
group calls over aiortc), ``e2ee`` (end-to-end encrypted media through the SFU) and ``cli`` (the
``callbook`` client commands). It imports ``signaling.protocol`` and its libraries only, never
the server, so it installs on its own (``signaling/sdk/pyproject.toml``). Nothing is imported
here: ``import signaling.sdk.client`` does not load aiortc.
"""
