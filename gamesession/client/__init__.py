"""The Twisted client and the ``gamesession`` command line.

- ``gameclient``: ``GameClient``, what a Python game programs against.
- ``events``: the event queues behind GameClient's callbacks.
- ``cli``: the ``gamesession`` command and its subcommands.
- ``ping``, ``healthcheck``, ``status``: those subcommands.
- ``address``: ``HOST[:PORT]`` parsing shared by the subcommands.
- ``password``: where a logging-in command gets the password from.

The protocol logic itself is in :mod:`gamesession.protocol.clientcore`.
"""

from gamesession.client.gameclient import FramingMismatch, GameClient, SessionClosed
from gamesession.keys import KeyFileError
from gamesession.protocol.clientcore import MAX_DATAGRAM, MAX_MESSAGE, LoginFailed, PayloadTooLarge
from gamesession.protocol.handshake import ServerKeyMismatch

__all__ = ["GameClient", "SessionClosed", "PayloadTooLarge", "LoginFailed", "ServerKeyMismatch",
           "FramingMismatch", "KeyFileError", "MAX_MESSAGE", "MAX_DATAGRAM"]
