"""The store itself, knowing no people: how to reach it (``connection``), every key and TTL in it
(``keys``), the embedded Valkey (``embedded``), the media-node registry kept in it
(``media_nodes``), and stopping the tasks that talk to it (``tasks``: a store command can
swallow a cancellation).

It imports nothing else of ``directory``: the address book builds on it, and so does the media
node, which knows no people and so imports nothing of ``directory`` but this package
(``tests/test_dependency_rules.py``). ``keys`` names every key of the store, people's included,
because all keys and TTLs live in one module; it is a catalogue of names, and reading or writing
what they hold is the address book's work, not this package's.
"""
