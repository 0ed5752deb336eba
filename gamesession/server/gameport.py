"""The UDP game port: moves datagrams between the socket and the registry."""

from twisted.internet.protocol import DatagramProtocol


class GamePort(DatagramProtocol):
    """All the work is in ``SessionRegistry.datagram_received``."""

    def __init__(self, registry):
        self.registry = registry

    def startProtocol(self):
        self.registry.transport = self.transport
        # Hot path: one call per datagram instead of two.
        self.datagramReceived = self.registry.datagram_received

    def stopProtocol(self):
        self.registry.transport = None

    def datagramReceived(self, datagram, addr):
        self.registry.datagram_received(datagram, addr)
