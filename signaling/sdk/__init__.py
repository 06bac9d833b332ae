"""A calling client: the call WebSocket, aiortc media, and the CLI bots built on them."""
