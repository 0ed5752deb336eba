"""Room handlers that the real-process tests load with ``--room TYPE=room_handlers.Name``.

(Imported by twistd, so it imports nothing from the tests.)
"""

from gamesession.server.roomhandler import RelayRoom


class Countdown(RelayRoom):
    """Authoritative: members' messages set a counter; each tick sends it, counting down."""

    def room_created(self, room):
        self.count = None

    def message_received(self, room, member, payload, to):
        self.count = int(payload)

    def tick(self, room, dt):
        if self.count is None:
            return
        room.send_datagram(b"count %d" % self.count)
        if self.count == 0:
            room.close("done")
        self.count -= 1


class Exploding(RelayRoom):
    """Raises in every method it can; the server must shrug it off."""

    def joined(self, room, member):
        raise RuntimeError("boom in joined")

    def datagram_received(self, room, member, payload, to):
        raise RuntimeError("boom in datagram_received")
