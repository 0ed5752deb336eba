"""The Twisted client and the ``gamesession`` command line.

- ``gameclient``: ``GameClient``, what a Python game programs against.
- ``cli``: the ``gamesession`` command and its subcommands.
- ``ping``, ``healthcheck``, ``status``: those subcommands.
- ``address``: ``HOST[:PORT]`` parsing shared by the subcommands.

The protocol logic itself is in :mod:`gamesession.protocol.clientcore`.
"""

from gamesession.client.gameclient import GameClient

__all__ = ["GameClient"]
