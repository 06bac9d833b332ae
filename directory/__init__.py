"""The address book: accounts, handles, devices, contacts, blocks and privacy settings on Redis.

Knows nothing about HTTP or WebRTC; the signaling service is its only caller. Its subpackage
``storage`` (the connection, every key, the embedded Valkey, the media-node registry) knows no
people: the media node imports that and nothing else of ``directory``.
"""
