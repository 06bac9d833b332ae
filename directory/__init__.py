"""The address book: accounts, handles, devices, contacts, blocks and privacy settings on Redis.

Knows nothing about HTTP or WebRTC; the signaling service is its only caller.
"""
