"""Knocking from the client side: send the sequence, then connect.

``knock()`` sends every knock from one UDP socket with a small spacing
(seeds/002 found that knocks sent back to back arrive reordered).
``knock_and_connect()`` wraps a connect attempt: when the login port
refuses, drops or ignores the connection, the whole sequence is sent again
(a lost knock leaves the server waiting for it; a restart from the first
port always works, see docs/knocking.md).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Awaitable, Callable, Optional, Sequence, Tuple, Type, TypeVar

from twisted.internet import defer, error, task
from twisted.internet.protocol import DatagramProtocol

from gamesession.knock.rule import canonical_host, make_client_knocks

DEFAULT_SPACING = 0.02
DEFAULT_ATTEMPTS = 3
DEFAULT_SETTLE = 0.05

# What a gated login port looks like from the client: the in-process gate
# closes before a byte (ConnectionClosed, or a reset while still connecting:
# ConnectError), the kernel gate drops the SYN (connect or login times out).
GATED: Tuple[Type[BaseException], ...] = (
    error.ConnectError,  # refused, reset while connecting, TCP timeouts
    error.ConnectionClosed,
    defer.TimeoutError,
)

T = TypeVar("T")


def source_address(ip: str, port: int) -> str:
    """The local address the kernel would send from to reach ``ip``.

    A UDP ``connect`` only consults the routing table; nothing is sent.
    Behind NAT the server sees another address: pass ``source`` then.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((ip, port))
        return canonical_host(s.getsockname()[0])


async def _resolve(reactor, host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return await reactor.resolve(host)


def knock(
    reactor,
    host: str,
    ports: Sequence[int],
    secret: Optional[bytes] = None,
    spacing: float = DEFAULT_SPACING,
    source: Optional[str] = None,
    nonce: Callable[[int], bytes] = os.urandom,
    server_id: bytes = b"",
) -> defer.Deferred:
    """Send the knock sequence to ``host``; fires when the last one is sent.

    With ``secret``, knocks are authenticated for ``source`` (the address
    the server will see; by default the local address routed to ``host``)
    and, with ``server_id``, for the server's ``--knock-server-id``.
    """
    return defer.ensureDeferred(_knock(reactor, host, ports, secret, spacing, source, nonce,
                                       server_id))


async def _knock(reactor, host, ports, secret, spacing, source, nonce, server_id=b"") -> None:
    ip = await _resolve(reactor, host)
    if secret is not None and source is None:
        source = source_address(ip, ports[0])
    interface = "::" if ipaddress.ip_address(ip).version == 6 else ""
    udp = reactor.listenUDP(0, DatagramProtocol(), interface=interface)
    try:
        knocks = make_client_knocks(ports, secret, source or "", reactor.seconds(), nonce,
                                    server_id)
        for i, (port, datagram) in enumerate(knocks):
            if i and spacing > 0:
                await task.deferLater(reactor, spacing, lambda: None)
            udp.write(datagram, (ip, port))
    finally:
        await defer.maybeDeferred(udp.stopListening)


def knock_and_connect(
    reactor,
    host: str,
    ports: Sequence[int],
    connect: Callable[[], "Awaitable[T] | defer.Deferred"],
    secret: Optional[bytes] = None,
    attempts: int = DEFAULT_ATTEMPTS,
    spacing: float = DEFAULT_SPACING,
    settle: float = DEFAULT_SETTLE,
    source: Optional[str] = None,
    retry_on: Tuple[Type[BaseException], ...] = GATED,
    server_id: bytes = b"",
) -> defer.Deferred:
    """Knock, wait ``settle`` seconds, call ``connect()``; on a gated-looking
    failure knock the whole sequence again, up to ``attempts`` times.

    ``connect`` should fail with one of ``retry_on`` when the server closes
    the connection before speaking; its result is this Deferred's result.
    """

    async def run():
        for attempt in range(1, attempts + 1):
            await knock(reactor, host, ports, secret, spacing, source, server_id=server_id)
            if settle > 0:
                await task.deferLater(reactor, settle, lambda: None)
            try:
                return await connect()
            except retry_on:
                if attempt == attempts:
                    raise

    return defer.ensureDeferred(run())
