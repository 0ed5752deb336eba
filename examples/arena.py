"""Arena: a tiny multiplayer game on gamesession rooms, for two or more people.

    python examples/arena.py [--plain] [--room TYPE] HOST[:PORT] SERVER_KEY USER [PASSWORD]

Everyone who runs it against the same server lands in the same room
(``join_or_create``) and sees the others move on a 12 x 6 board.  Type a
line and press Enter:

    w a s d     move up, left, down, right (several at once: "ddd")
    say TEXT    chat with the room
    quit        leave (end of input does the same)

How it uses the client library (``gamesession.client.GameClient``):

- moves go out as room datagrams (UDP: fast, may be lost), and every player
  repeats its position once a second, so a lost move is corrected;
- a newcomer gets everyone's position as a room message sent to it alone
  (TCP: reliable), when its presence event arrives;
- presence events say who joined and who left (and why);
- chat lines are room messages to all.

``--plain`` prints one line per event instead of redrawing the board (what
the test reads; also handy when the terminal is not a terminal).
"""

import argparse
import sys

from twisted.internet import defer, stdio, task

from gamesession.client import GameClient
from gamesession.client.address import split_host_port
from gamesession.client.roomcli import Console, printable

WIDTH, HEIGHT = 12, 6
MOVES = {"w": (0, -1), "a": (-1, 0), "s": (0, 1), "d": (1, 0)}
REPEAT = 1.0  # seconds between position repeats


def parse_position(data: bytes):
    """(x, y) of a ``pos X Y`` payload, or None: peers' bytes are never trusted."""
    parts = data.split()
    if len(parts) != 3 or parts[0] != b"pos" or not all(p.isdigit() for p in parts[1:]):
        return None
    x, y = int(parts[1]), int(parts[2])
    return (x, y) if 0 <= x < WIDTH and 0 <= y < HEIGHT else None


class Arena:
    """The game state of one player and what it shows."""

    def __init__(self, room, user, out, plain):
        self.room = room
        self.user = user
        self.out = out
        self.plain = plain
        self.positions = {}  # member id -> (x, y)
        self.log = []
        start = room.member - 1
        self.me = ((start * 3) % WIDTH, (start // 4) % HEIGHT)
        self.positions[room.member] = self.me

    # -- what the player does --------------------------------------------------------

    def command(self, line: bytes) -> bool:
        """Handle one input line; False to quit."""
        text = line.decode("utf-8", "replace").strip()
        if text == "quit":
            return False
        if text.startswith("say "):
            self.room.send_message(text[4:].encode("utf-8"))
            self.event("<{}> {}".format(self.user, text[4:]))
        elif text and all(c in MOVES for c in text):
            x, y = self.me
            for c in text:
                dx, dy = MOVES[c]
                x, y = min(max(x + dx, 0), WIDTH - 1), min(max(y + dy, 0), HEIGHT - 1)
            self.me = self.positions[self.room.member] = (x, y)
            self.send_position()
            self.draw()
        elif text:
            self.event("? w/a/s/d to move, 'say TEXT' to chat, 'quit' to leave")
        return True

    def send_position(self, to=None, reliable=False):
        payload = "pos {} {}".format(*self.me).encode("ascii")
        (self.room.send_message if reliable else self.room.send_datagram)(payload, to=to)

    # -- what the room says ------------------------------------------------------------

    def presence(self, event):
        if event.event == "join":
            self.event("{} joined".format(event.user))
            self.send_position(to=event.member, reliable=True)  # the newcomer learns where we are
        else:
            self.positions.pop(event.member, None)
            self.event("{} left ({})".format(event.user, event.reason))

    def message(self, event):
        where = parse_position(event.data)
        if where is not None:
            self.moved(event.sender, where)
        else:
            self.event("<{}> {}".format(self.room.user(event.sender) or "room",
                                         printable(event.data)))

    def datagram(self, event):
        where = parse_position(event.data)
        if where is not None:
            self.moved(event.sender, where)

    def moved(self, member, where):
        if member not in self.room.members or self.positions.get(member) == where:
            return
        self.positions[member] = where
        if self.plain:
            self.out("{} at {},{}".format(self.room.user(member), *where))
        else:
            self.draw()

    # -- showing it ------------------------------------------------------------------

    def event(self, text):
        if self.plain:
            self.out(text)
            return
        self.log = (self.log + [text])[-5:]
        self.draw()

    def draw(self):
        if self.plain:
            return
        grid = [["." for _ in range(WIDTH)] for _ in range(HEIGHT)]
        for member, (x, y) in sorted(self.positions.items()):
            name = self.room.user(member) or "?"
            grid[y][x] = name[0].upper() if member == self.room.member else name[0].lower()
        legend = ", ".join("{}{}".format(self.room.user(m), " (you)" if m == self.room.member else "")
                           for m in sorted(self.room.members))
        lines = ["\x1b[2J\x1b[H" + "arena {}: {}".format(self.room.id, legend)]
        lines += ["".join(row) for row in grid] + self.log + ["w/a/s/d, say TEXT, quit > "]
        self.out("\n".join(lines))


async def play(reactor, args):
    host, port = split_host_port(args.server, 7000)
    client = await GameClient.connect(reactor, host, port, args.server_key, args.user,
                                      args.password, timeout=10)
    room = await client.join_or_create(args.room, max_members=8)
    quitting = defer.Deferred()

    def line(data):
        if not game.command(data) and not quitting.called:
            quitting.callback("quit")

    console = Console(line)
    game = Arena(room, client.welcome.user, console.say, args.plain)
    room.on_presence = game.presence
    room.on_message = game.message
    room.on_datagram = game.datagram
    stdio.StandardIO(console, reactor=reactor)
    if args.plain:
        console.say("joined {} as {} (members: {})".format(
            room.id, game.user, ", ".join(room.members[m] for m in sorted(room.members))))
    game.draw()
    game.send_position(reliable=True)  # where we start, to everyone already here
    repeat = task.LoopingCall(game.send_position)
    repeat.clock = reactor
    repeat.start(REPEAT, now=False)
    console.ended.addCallback(lambda _: quitting.called or quitting.callback("eof"))
    client.wait_closed().addCallback(lambda r: quitting.called or quitting.callback(r))
    await quitting
    repeat.stop()
    if client.end_reason is None:
        await room.leave()
        await client.logout()
    await console.close()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="arena.py", description="A tiny multiplayer game on gamesession rooms.")
    parser.add_argument("server", metavar="HOST[:PORT]")
    parser.add_argument("server_key", metavar="SERVER_KEY",
                        help="the server's public key as 'gamesession pubkey' prints it")
    parser.add_argument("user")
    parser.add_argument("password", nargs="?", default="")
    parser.add_argument("--room", default="arena", help="room type to join or create")
    parser.add_argument("--plain", action="store_true",
                        help="one line per event instead of drawing the board")
    args = parser.parse_args(argv)

    async def run(reactor):
        try:
            await play(reactor, args)
        except Exception as e:
            print("arena: {}: {}".format(type(e).__name__, e), file=sys.stderr)
            raise SystemExit(1)

    task.react(run)


if __name__ == "__main__":
    main()
