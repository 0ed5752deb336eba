"""The baseline: a plain Twisted ``DatagramProtocol`` echo, no security at all.

Run as ``python -m gamesession.bench.echo PORT``; prints ``ready`` once it
listens.  It is what the project's security layer is measured against.
"""

import sys

from twisted.internet.protocol import DatagramProtocol


class Echo(DatagramProtocol):
    def datagramReceived(self, datagram, addr):
        self.transport.write(datagram, addr)


def serve(protocol, argv=None):
    """Listen with ``protocol`` on 127.0.0.1 at the UDP port ``argv[0]`` (0: any),
    print ``ready PORT`` and run the reactor: how every baseline starts."""
    from twisted.internet import reactor

    argv = sys.argv[1:] if argv is None else argv
    port = reactor.listenUDP(int(argv[0]), protocol, interface="127.0.0.1")
    print("ready", port.getHost().port, flush=True)
    reactor.run()


def main(argv=None):
    serve(Echo(), argv)


if __name__ == "__main__":
    main()
