"""Operations: what the server counts and how an operator reads it.

- ``stats``: the in-process counters and the RTT histogram.
- ``metrics``: the Prometheus collector and ``--metrics`` endpoint.
- ``summary``: periodic drop summaries in the log.
- ``jsonlog``: JSON-lines logging for ``twistd --logger``.
"""
