"""Many server processes and machines acting as one service (``--cluster``).

- ``directory``: the records (nodes, users, rooms, transfer tickets) and
  ``IDirectory``, what every node of a cluster shares.
- ``memory``: ``InMemoryDirectory``, the directory of a single node (and of
  unit tests).
- ``redisdir``: ``RedisDirectory``, the directory in Redis (txredisapi).
- ``node``: ``ClusterNode``, this node's membership: heartbeat, reconnection,
  the cluster-wide login rule, kicks from other nodes.
- ``rooms``: ``ClusterRooms``, rooms across nodes (publishing, listing,
  redirects with transfer tickets) and ``TicketChecker`` (the ticket login).
- ``options``: the ``--cluster`` options of ``twistd gamesession``.

Per-packet work never touches any of this: the directory is consulted when a
session starts and told when it ends.
"""
