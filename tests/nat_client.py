"""A long-lived gamesession client driven line by line, for tests/test_nat.py.

    python tests/nat_client.py HOST PORT SERVER_KEY USER PASSWORD

Logs in (over TCP, then the session's UDP channel), prints one JSON line
``{"event": "ready", ...}`` and then obeys commands on stdin, one per line,
answering each with one JSON line:

    ping N      send N pings (0.1 s apart, 1 s timeout each)
    packet      the last datagram this client sent, in hex (for a replay)
    quit        log out and exit

The test pauses between commands (e.g. to flush the NAT's conntrack entries
mid-session).  Everything is bounded: each ping by its timeout, the whole
run by --deadline seconds, after which the client exits by itself.
"""

import argparse
import json
import sys

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, reactor, client, done):
        self.reactor = reactor
        self.client = client
        self.done = done
        self.queue = defer.DeferredLock()

    def lineReceived(self, line):
        self.queue.run(lambda: defer.ensureDeferred(self.run(line.decode().split())))

    def connectionLost(self, reason=None):
        if not self.done.called:
            self.done.callback("stdin closed")

    async def run(self, words):
        client = self.client
        if not words:
            return
        if words[0] == "ping":
            count = int(words[1])
            received = 0
            for seq in range(count):
                if seq:
                    await task.deferLater(self.reactor, 0.1, lambda: None)
                if client.end_reason is not None:
                    break
                try:
                    await client.ping(1.0)
                    received += 1
                except (defer.TimeoutError, defer.CancelledError):
                    pass
            emit(event="pings", sent=count, received=received, end_reason=client.end_reason)
        elif words[0] == "packet":
            emit(event="packet", hex=client.last_packet.hex())
        elif words[0] == "quit":
            if client.end_reason is None:
                await client.logout().addTimeout(3, self.reactor).addErrback(lambda _: None)
            emit(event="bye", end_reason=client.end_reason)
            if not self.done.called:
                self.done.callback("quit")
        else:
            emit(event="error", reason="unknown command {!r}".format(words[0]))


async def main(reactor, args):
    from gamesession.client import GameClient
    from gamesession.keys import read_public_key

    client = await GameClient.connect(
        reactor, args.host, args.port, read_public_key(args.server_key),
        args.user, args.password, timeout=5.0,
    )
    client.last_packet = b""
    write = client.udp.write

    def recording_write(packet, addr=None):
        client.last_packet = packet
        return write(packet, addr)

    client.udp.write = recording_write
    emit(
        event="ready",
        token=client.welcome.token.hex(),
        local_port=client.udp.getHost().port,
        server_udp=list(client.server_udp),
    )
    done = defer.Deferred()
    done.addTimeout(args.deadline, reactor)
    stdio.StandardIO(Commands(reactor, client, done), reactor=reactor)
    try:
        await done
    except defer.TimeoutError:
        emit(event="deadline")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("server_key")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--deadline", type=float, default=60.0)
    arguments = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
