"""The call WebSocket: messages, and the connection handler."""
