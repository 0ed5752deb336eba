"""The Twisted server: ``twistd gamesession``.

- ``tap``: the options and the services that ``twistd`` runs.
- ``login``: the TCP login protocol and each session's control channel.
- ``registry``: sessions by token, user and connection; the UDP hot path; timers.
- ``gameport``: the UDP port, a thin DatagramProtocol in front of the registry.
- ``accounts``: the twisted.cred realm, avatar and guest checker.
- ``application``: ``IGameApplication``, the interface a game implements.
- ``limits``: rate limits, pending-login counts, the failed-login backoff.
"""
