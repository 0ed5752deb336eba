"""The baseline: a plain Twisted ``DatagramProtocol`` echo, no security at all.

Run as ``python -m gamesession.bench.echo PORT [RCVBUF]``; prints ``ready`` once
it listens.  It is what the project's security layer is measured against.
"""

import sys

from twisted.internet.protocol import DatagramProtocol


class Echo(DatagramProtocol):
    def datagramReceived(self, datagram, addr):
        self.transport.write(datagram, addr)


def serve(protocol, argv=None):
    """Listen with ``protocol`` on 127.0.0.1 at the UDP port ``argv[0]`` (0: any),
    print ``ready PORT`` and run the reactor: how every baseline starts.

    ``argv[1]``, if given, is the socket's receive buffer in bytes (what the
    server under test gets as ``--udp-rcvbuf``), so both sides get the same.
    """
    from twisted.internet import reactor

    from gamesession.server.gameport import set_receive_buffer

    argv = sys.argv[1:] if argv is None else argv
    port = reactor.listenUDP(int(argv[0]), protocol, interface="127.0.0.1")
    if len(argv) > 1:
        set_receive_buffer(port.socket, int(argv[1]))
    print("ready", port.getHost().port, flush=True)
    reactor.run()


def main(argv=None):
    serve(Echo(), argv)


if __name__ == "__main__":
    main()
