"""The Twisted client and the ``gamesession`` command line.

- ``gameclient``: ``GameClient``, what a Python game programs against.
- ``room``: ``Room`` and GameClient's room operations (create, join, ...).
- ``events``: the event queues behind GameClient's callbacks.
- ``cli``: the ``gamesession`` command and its subcommands.
- ``ping``, ``roomcli`` (``gamesession room``), ``healthcheck``, ``status``: those subcommands.
- ``address``: ``HOST[:PORT]`` parsing shared by the subcommands.
- ``password``: where a logging-in command gets the password from.

The protocol logic itself is in :mod:`gamesession.protocol.clientcore`.
"""

from gamesession.client.gameclient import FramingMismatch, GameClient, SessionClosed
from gamesession.client.room import Room, RoomClosed
from gamesession.keys import KeyFileError
from gamesession.protocol.clientcore import (
    MAX_DATAGRAM, MAX_MESSAGE, MAX_ROOM_DATAGRAM, MAX_ROOM_MESSAGE, LoginFailed, NotInRoom,
    PayloadTooLarge)
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.protocol.rooms import RoomRefused

__all__ = ["GameClient", "SessionClosed", "PayloadTooLarge", "LoginFailed", "ServerKeyMismatch",
           "FramingMismatch", "KeyFileError", "MAX_MESSAGE", "MAX_DATAGRAM", "Room", "RoomClosed",
           "RoomRefused", "NotInRoom", "MAX_ROOM_MESSAGE", "MAX_ROOM_DATAGRAM"]
