"""The rooms baseline: a plain Twisted UDP room relay, no security at all.

Run as ``python -m gamesession.bench.relay PORT``; prints ``ready PORT`` once
it listens.  ``bench rooms`` sends the same load through it and through the
real server.  Packets (integers unsigned 32-bit little-endian):

    J room member           join: remember the sender's address as that member
    D room member data      relay data to every other member of the room, as
    R to member data        one datagram per receiver (``to`` names it, as a
                            gamesession token does)

Anyone can join any room or speak as any member: what the real server's
keys, stamping and limits cost is what this leaves out.
"""

import struct

from twisted.internet.protocol import DatagramProtocol

from gamesession.bench.echo import serve

HEADER = struct.Struct("<cII")


class Relay(DatagramProtocol):
    def __init__(self):
        self.rooms = {}  # room -> {member: address}

    def datagramReceived(self, datagram, addr):
        if len(datagram) < HEADER.size:
            return
        kind, room, member = HEADER.unpack_from(datagram)
        if kind == b"J":
            self.rooms.setdefault(room, {})[member] = addr
        elif kind == b"D":
            members = self.rooms.get(room)
            if not members:
                return
            tail = datagram[5:]  # member + data: the receiver sees who sent it
            write = self.transport.write
            for other, address in members.items():
                if other != member:
                    write(b"R" + other.to_bytes(4, "little") + tail, address)


def main(argv=None):
    serve(Relay(), argv)


if __name__ == "__main__":
    main()
