"""Everything that makes several signaling nodes one service: the router between nodes and its
two implementations (in-process, Redis pub/sub), the pub/sub channels, node liveness, draining a
node, store outages as a node sees them, and the warning for a lone local-routing node.

docs/scaling.md describes the design; the call service (``signaling.calls``) reaches the other
nodes only through ``routing.Router``.
"""
