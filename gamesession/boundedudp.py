"""UDP ports that hand at most N datagrams to their protocol per reactor turn.

Twisted's ``udp.Port.doRead`` reads until 256 KiB have arrived or the socket
is empty.  Zero-length datagrams add nothing to that budget, and small ones
add little (4500 knocks of 58 bytes): one flooding sender keeps the reactor
in one port's loop while the game port, the login port and the timers wait.
``BoundedPort`` also stops after ``max_datagrams`` datagrams, whatever their
size, then returns to the reactor, which calls it again on its next turn if
more are waiting.  ``BoundedUDPServer`` is ``internet.UDPServer`` listening
with one; on a reactor without file descriptors (tests' memory reactors) it
falls back to the reactor's own ``listenUDP``.
"""

import socket

from twisted.application import internet
from twisted.internet import udp
from twisted.internet.posixbase import PosixReactorBase
from twisted.python import log

DEFAULT_MAX_DATAGRAMS = 256


class BoundedPort(udp.Port):
    """``udp.Port`` that reads at most ``max_datagrams`` (and 256 KiB) per doRead."""

    def __init__(self, port, proto, interface="", maxPacketSize=8192, reactor=None,
                 max_datagrams=DEFAULT_MAX_DATAGRAMS):
        super().__init__(port, proto, interface, maxPacketSize, reactor)
        self.max_datagrams = max_datagrams

    def doRead(self):
        # udp.Port.doRead with a datagram count as well as a byte budget.
        read = 0
        recvfrom = self.socket.recvfrom
        size = self.maxPacketSize
        received = self.protocol.datagramReceived
        six = self.addressFamily == socket.AF_INET6
        for _ in range(self.max_datagrams):
            if read >= self.maxThroughput:
                return
            try:
                data, addr = recvfrom(size)
            except OSError as se:
                no = se.args[0]
                if no in udp._sockErrReadIgnore:
                    return
                if no in udp._sockErrReadRefuse:
                    if self._connectedAddr:
                        self.protocol.connectionRefused()
                    return
                raise
            read += len(data)
            if six:
                addr = addr[:2]
            try:
                received(data, addr)
            except BaseException:
                log.err()


class BoundedUDPServer(internet.UDPServer):
    """``internet.UDPServer(port, protocol, interface=..., reactor=...)`` with a BoundedPort."""

    def __init__(self, port, protocol, interface="", reactor=None,
                 max_datagrams=DEFAULT_MAX_DATAGRAMS):
        super().__init__(port, protocol, interface=interface, reactor=reactor)
        self.max_datagrams = max_datagrams

    def _getPort(self):
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        if not isinstance(reactor, PosixReactorBase):
            return super()._getPort()
        port, protocol = self.args
        listening = BoundedPort(port, protocol, interface=self.kwargs.get("interface", ""),
                                reactor=reactor, max_datagrams=self.max_datagrams)
        listening.startListening()
        return listening
