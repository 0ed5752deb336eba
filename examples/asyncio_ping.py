"""A gamesession client on plain asyncio: the sans-I/O ClientCore, no Twisted.

    python examples/asyncio_ping.py HOST PORT SERVER_KEY [USER [PASSWORD]]

(with gamesession installed, or ``PYTHONPATH=.`` from the checkout).
SERVER_KEY is what ``gamesession pubkey`` prints, or @FILE holding it.

Shows what a pygame or asyncio game loop does: frame TCP itself (int16
framing here), feed frames and datagrams to ClientCore, send what it returns.
"""

import argparse
import asyncio
import os
import struct
import sys
import time

from gamesession.protocol.clientcore import ClientCore, Welcome
from gamesession.protocol.datagram import Drop, Kind
from gamesession.keys import read_public_key


async def read_frame(reader):
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(length)


def write_frame(writer, frame):
    writer.write(struct.pack("!H", len(frame)) + frame)


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self):
        self.queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.queue.put_nowait(data)


async def main(host, port, server_key, user="guest", password=""):
    core = ClientCore(bytes(read_public_key(server_key)), user, password)
    reader, writer = await asyncio.open_connection(host, port)
    write_frame(writer, core.hello())
    welcome = None
    while welcome is None:
        frames, events = core.frame_received(await read_frame(reader))
        for frame in frames:
            write_frame(writer, frame)
        welcome = next((e for e in events if isinstance(e, Welcome)), None)
    loop = asyncio.get_running_loop()
    server_host = writer.get_extra_info("peername")[0]
    transport, datagrams = await loop.create_datagram_endpoint(
        Datagrams, remote_addr=(server_host, welcome.udp_port))
    received = 0
    for seq in range(3):
        ping_id = os.urandom(8)
        sent = time.monotonic()
        transport.sendto(core.datagram(Kind.PING, ping_id))
        try:
            while True:
                packet = await asyncio.wait_for(datagrams.queue.get(), 2)
                try:
                    kind, payload = core.datagram_received(packet)
                except Drop:
                    continue
                if kind == Kind.PING:  # the server's keepalive: answer it
                    transport.sendto(core.datagram(Kind.PONG, payload))
                elif kind == Kind.PONG and payload == ping_id:
                    received += 1
                    print("pong seq={} time={:.3f} ms".format(seq, (time.monotonic() - sent) * 1000))
                    break
        except asyncio.TimeoutError:
            print("seq={} timeout".format(seq))
    write_frame(writer, core.logout())
    await writer.drain()
    print(core.frame_received(await read_frame(reader))[1])
    transport.close()
    writer.close()
    return received


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Log in to a gamesession server from plain asyncio, ping 3 times, log out.")
    parser.add_argument("host", help="the server's address, e.g. 127.0.0.1")
    parser.add_argument("port", type=int, help="the login port, e.g. 7000")
    parser.add_argument("server_key", help="the server's public key (gamesession pubkey) or @FILE")
    parser.add_argument("user", nargs="?", default="guest", help="user name (default: guest)")
    parser.add_argument("password", nargs="?", default="", help="password (default: empty)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sys.exit(0 if asyncio.run(main(args.host, args.port, args.server_key, args.user,
                                   args.password)) else 1)
