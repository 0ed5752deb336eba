"""The baseline: a plain Twisted ``DatagramProtocol`` echo, no security at all.

Run as ``python -m gamesession.bench.echo PORT``; prints ``ready`` once it
listens.  It is what the project's security layer is measured against.
"""

import sys

from twisted.internet.protocol import DatagramProtocol


class Echo(DatagramProtocol):
    def datagramReceived(self, datagram, addr):
        self.transport.write(datagram, addr)


def main(argv=None):
    from twisted.internet import reactor

    argv = sys.argv[1:] if argv is None else argv
    port = reactor.listenUDP(int(argv[0]), Echo(), interface="127.0.0.1")
    print("ready", port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
