"""Run inside a test-made network namespace by test_knock_firewall.py.

A knock service with the nft gate in front of a TCP port that greets
granted peers with b"hello".  Prints READY once the nft table is in place;
SIGTERM stops it (removing the table).

    python knock_netns_server.py LOGIN_PORT P1,P2,...
"""

import sys

from twisted.internet import protocol, reactor

from gamesession.knock.firewall import NftFirewall
from gamesession.knock.rule import Knocker, parse_ports
from gamesession.knock.listeners import KnockService


class Hello(protocol.Protocol):
    def connectionMade(self):
        if not self.factory.gate.allows(self.transport.getPeer().host):
            self.transport.abortConnection()
            return
        self.transport.write(b"hello")


def main():
    login_port, ports = int(sys.argv[1]), parse_ports(sys.argv[2])
    svc = KnockService(Knocker(ports, window=10, grant=30), firewall=NftFirewall(login_port))
    factory = protocol.Factory.forProtocol(Hello)
    factory.gate = svc.gate
    reactor.listenTCP(login_port, factory)
    svc.startService()
    reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    print("READY", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
