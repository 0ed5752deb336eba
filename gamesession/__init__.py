"""gamesession: a Twisted multiplayer session server.

TCP login (twisted.cred) binds NaCl-secured UDP datagrams to a session by a
cleartext token plus authenticated encryption; see docs/protocol.md.
"""

__version__ = "0.1.0"
