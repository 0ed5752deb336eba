"""``gamesession bench``: the server measured against plain Twisted on one machine.

Three processes per measurement: the server under test (the real
``twistd -n gamesession``, or a baseline: the plain Twisted UDP echo, or for
``bench rooms`` the plain Twisted room relay), and one
load generator that speaks the real protocol through ``clientcore``.  Each is
pinned to its own core where the OS allows.  See docs/benchmarks.md.
"""
