"""Port knocking: a sequence of UDP ports that opens the TCP login port.

- ``rule``: the sans-I/O knock rule, its bounded tables and authenticated knocks.
- ``listeners``: the UDP knock listeners and their periodic summaries.
- ``options``: the ``--knock*`` options of ``twistd gamesession``.
- ``firewall``: the kernel gate, an nftables set with timeouts.
- ``client``: sends a knock sequence before a login.

See docs/knocking.md.
"""
