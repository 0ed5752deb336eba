"""The sans-I/O protocol that both ends share, as docs/protocol.md specifies it.

Nothing here does I/O or imports Twisted (a test enforces it): a client in
another language mirrors these modules, and the Twisted server and client
only move bytes to and from them.

- ``handshake``: the X25519 handshake, the key schedule, the sealed TCP stream.
- ``datagram`` and ``replay``: the UDP packet format and its replay window.
- ``wire``: TCP control messages, error codes and the two framings' byte forms.
- ``clientcore``: the client's state machine, driven by any event loop.
- ``vectors``: computes the protocol document's test vectors.
"""
