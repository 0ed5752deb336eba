"""``gamesession room``: join a room, print one line per event, send stdin lines to it.

    gamesession room --server HOST[:PORT] --server-key KEY|@FILE [--user U] [--password P]
                     [--room NAME | --join ID | --create TYPE] [--udp] [--knock ...]

Output, one line per event on stdout:

    joined 9f1c2e3d4c5b6a70 as alice (members: bob, alice)
    + carol joined
    - bob left (timeout)
    <carol> hello

On a cluster, a room hosted on another node is followed there (a fresh login
with the transfer ticket the first node handed out), said on one line first:

    moved to 10.0.0.2:7000 (room 9f1c2e3d4c5b6a70 is on that node)

Each line read from stdin goes to the other members as a room message (TCP),
or as a room datagram with ``--udp``.  At end of input the command leaves the
room, logs out and exits 0.  Failures are one line on stderr and exit 1
(login failures as ``gamesession ping`` words them, refusals with their code).
"""

import sys

from twisted.internet import defer, stdio
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from gamesession.client.address import join_host_port
from gamesession.client.gameclient import SessionClosed
from gamesession.client.ping import connect_from_args
from gamesession.protocol.clientcore import PayloadTooLarge
from gamesession.protocol.rooms import RoomRefused

DEFAULT_ROOM_TYPE = "lobby"
# Control characters a peer could use to drive the terminal: shown as U+FFFD.
_CONTROL = {c: "\ufffd" for c in list(range(0, 32)) + [127] if c != 9}


def printable(data: bytes) -> str:
    """Text of a peer's bytes safe to print on a terminal: UTF-8, control characters replaced."""
    return data.decode("utf-8", "replace").translate(_CONTROL)


def moved_line(redirect) -> str:
    """``moved to HOST:PORT (room ID is on that node)``: the session followed a redirect."""
    return "moved to {} (room {} is on that node)".format(
        join_host_port(redirect.host, redirect.port), redirect.room.hex())


def joined_line(room, user: str) -> str:
    """``joined ROOM as USER (members: a, b)``: members in join order, this user included."""
    names = [name for _, name in sorted(room.members.items())]
    return "joined {} as {} (members: {})".format(room.id, user, ", ".join(names))


@implementer(IHalfCloseableProtocol)
class Console(LineReceiver):
    """stdin lines to ``on_line``; ``say`` writes a line to stdout.

    ``ended`` fires at end of input; ``closed`` once stdout is flushed and closed.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, on_line):
        self.on_line = on_line
        self.ended = defer.Deferred()
        self.closed = defer.Deferred()

    def say(self, text: str) -> None:
        self.transport.write(text.encode("utf-8", "replace") + b"\n")

    def lineReceived(self, line):
        self.on_line(line[:-1] if line.endswith(b"\r") else line)

    def lineLengthExceeded(self, line):
        complain("a line of over {} bytes was skipped".format(self.MAX_LENGTH))

    def readConnectionLost(self):
        if not self.ended.called:
            self.ended.callback(None)

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=None):
        self.readConnectionLost()
        if not self.closed.called:
            self.closed.callback(None)

    def close(self) -> defer.Deferred:
        self.transport.loseConnection()
        return self.closed


def complain(text: str) -> None:
    print("gamesession room: " + text, file=sys.stderr, flush=True)


async def enter(client, args):
    """The Room that ``--room``, ``--join`` or ``--create`` asks for."""
    if args.join:
        return await client.join_room(args.join)
    if args.create:
        return await client.create_room(args.create, max_members=args.max_members,
                                        listed=not args.private)
    return await client.join_or_create(args.room or DEFAULT_ROOM_TYPE,
                                       max_members=args.max_members)


async def room_main(reactor, args, server_key, password=None):
    client = await connect_from_args(reactor, args, server_key, password, "room")
    client.on_moved = lambda redirect: print(moved_line(redirect), flush=True)
    try:
        room = await enter(client, args)
    except RoomRefused as e:
        complain("refused: {}".format(e))
        await _logout(reactor, client, args.timeout)
        raise SystemExit(1)
    except SessionClosed as e:
        # An old server without rooms answers an unknown message type and closes.
        complain("{} while joining the room".format(e))
        raise SystemExit(1)
    user = client.welcome.user
    send = room.send_datagram if args.udp else room.send_message

    def send_line(line: bytes) -> None:
        if room.left is not None or client.end_reason is not None:
            return
        try:
            send(line)
        except PayloadTooLarge as e:
            complain("line not sent: {}".format(e))

    console = Console(send_line)
    stdio.StandardIO(console, reactor=reactor)
    console.say(joined_line(room, user))

    def presence(event):
        if event.event == "join":
            console.say("+ {} joined".format(event.user))
        elif event.event == "reconnecting":
            console.say("~ {} reconnecting...".format(event.user))
        elif event.event == "back":
            console.say("+ {} is back".format(event.user))
        else:
            console.say("- {} left ({})".format(event.user, event.reason))

    def said(event):
        console.say("<{}> {}".format(room.user(event.sender) or "room", printable(event.data)))

    room.on_presence = presence
    # This client's own connection (session resume): the room seat is kept.
    client.on_reconnecting = lambda reason: console.say("~ reconnecting... ({})".format(reason))
    client.on_reconnected = lambda resumed: console.say(
        "+ back" if resumed else "+ logged in again: the room was lost")
    room.on_message = said
    room.on_datagram = said
    client.on_room_error = lambda e: complain("not sent: {} ({})".format(e.reason, e.code))

    # The first of: end of input, this session leaving the room, the session ending.
    finished = defer.Deferred()
    console.ended.addCallback(lambda _: finished.called or finished.callback("eof"))
    room.wait_left().addCallback(lambda r: finished.called or finished.callback(("left", r)))
    client.wait_closed().addCallback(lambda r: finished.called or finished.callback(("ended", r)))
    outcome = await finished
    status = 0
    if outcome == "eof":
        try:
            await room.leave().addTimeout(args.timeout, reactor)
        except Exception as e:
            complain("leaving the room failed: {}".format(e))
            status = 1
    elif client.end_reason is not None:  # the session's end also leaves its rooms
        complain("session ended ({})".format(client.end_reason))
        status = 1
    else:
        complain("left room {} ({})".format(room.id, outcome[1]))
        status = 1
    await _logout(reactor, client, args.timeout)
    await console.close()
    if status:
        raise SystemExit(status)


async def _logout(reactor, client, timeout):
    if client.end_reason is None:
        await client.logout().addTimeout(timeout, reactor).addErrback(lambda _: None)
