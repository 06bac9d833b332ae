"""1:1 calls: the pure state machine, relay-only filtering, and the service that runs them."""
