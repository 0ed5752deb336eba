"""Rooms on a real twistd over loopback: options, handlers loaded by name, real UDP relay.

The clients are the sans-I/O ClientCore on blocking sockets and the room
codec, so this tests the server alone (the client library's room API has its
own tests).
"""

import socket
import struct

import pytest

from gamesession.keys import decode_key
from gamesession.protocol import rooms as codec
from gamesession.protocol import wire
from gamesession.protocol.clientcore import ClientCore
from gamesession.protocol.datagram import Kind

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


class BlockingClient:
    """One logged-in session on real sockets (int16 framing), reading room events."""

    def __init__(self, server, user):
        self.tcp = socket.create_connection(("127.0.0.1", server.login_port), timeout=5)
        self.buffer = b""
        self.core = ClientCore(decode_key(server.public_key), user, "")
        self._write(self.core.hello())
        while self.core.welcome is None:
            out, _ = self.core.frame_received(self._frame())
            for frame in out:
                self._write(frame)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.settimeout(5)
        self.udp.connect(("127.0.0.1", self.core.welcome.udp_port))
        self.udp.send(self.core.datagram(Kind.KEEPALIVE))
        self.rid = 0

    def _write(self, frame):
        self.tcp.sendall(wire.encode_frame(frame))

    def _frame(self):
        while len(self.buffer) < 2 or len(self.buffer) < 2 + struct.unpack_from("!H", self.buffer)[0]:
            data = self.tcp.recv(65536)
            assert data, "server closed the connection"
            self.buffer += data
        (size,) = struct.unpack_from("!H", self.buffer)
        frame, self.buffer = self.buffer[2:2 + size], self.buffer[2 + size:]
        return frame

    def request(self, make):
        self.rid += 1
        self._write(self.core.seal_message(make(self.rid)))

    def event(self):
        """The next room event over TCP (other frames skipped)."""
        while True:
            message = wire.decode(self.core.receiver.open(wire.unseal_envelope(
                wire.decode(self._frame()))))
            if message["type"] in codec.EVENT_TYPES:
                return codec.parse_event(message)

    def relay(self):
        """The next ROOM_RELAY over UDP (PINGs and the like skipped)."""
        while True:
            kind, payload = self.core.datagram_received(self.udp.recv(9000))
            if kind == Kind.ROOM_RELAY:
                return codec.unpack_room_relay(payload)

    def room_datagram(self, room, data, to=()):
        self.udp.send(self.core.datagram(Kind.ROOM_SEND, codec.pack_room_send(room, data, to)))


def test_relay_presence_and_a_ticking_handler_on_a_real_server(start_server):
    server = start_server("--room", "countdown=tests.room_handlers.Countdown",
                          "--room-tick", "countdown=20", "--max-room-members", "2")
    alice, bob, carol = (BlockingClient(server, u) for u in ("alice", "bob", "carol"))

    alice.request(lambda rid: codec.create(rid, "chat"))
    room = alice.event().room
    bob.request(lambda rid: codec.join(rid, room))
    assert bob.event().members == (codec.MemberInfo(1, "alice"), codec.MemberInfo(2, "bob"))
    assert alice.event() == codec.RoomPresence(room, "join", 2, "bob")
    carol.request(lambda rid: codec.join(rid, room))
    assert carol.event() == codec.RoomError(461, "room full", 1)

    # Relay over real UDP, sealed for bob, stamped with alice's member id.
    bob.udp.send(bob.core.datagram(Kind.KEEPALIVE))
    alice.room_datagram(room, b"hello over udp")
    assert bob.relay() == codec.RoomDatagram(room, 1, b"hello over udp")
    alice.request(lambda rid: codec.send(room, b"hello over tcp"))
    assert bob.event() == codec.RoomMessage(room, 1, b"hello over tcp")

    # An authoritative room loaded by name from --room, ticking at 20 Hz.
    carol.request(lambda rid: codec.create(rid, "countdown"))
    ticking = carol.event().room
    carol.request(lambda rid: codec.send(ticking, b"2"))
    assert [carol.relay().data for _ in range(3)] == [b"count 2", b"count 1", b"count 0"]
    assert carol.event() == codec.RoomLeft(ticking, "closed")

    bob.tcp.close()
    # Suspended for a resume first (--resume-grace, default 20 s): the seat stays.
    assert alice.event() == codec.RoomPresence(room, "reconnecting", 2, "bob")
    assert "Traceback" not in server.log()


def test_a_raising_handler_does_not_take_the_server_down(start_server):
    server = start_server("--room", "boom=tests.room_handlers.Exploding")
    alice, bob = BlockingClient(server, "alice"), BlockingClient(server, "bob")
    alice.request(lambda rid: codec.create(rid, "boom"))
    room = alice.event().room
    bob.request(lambda rid: codec.join(rid, room))
    assert bob.event().member == 2
    for _ in range(3):
        bob.room_datagram(room, b"x")
    alice.request(lambda rid: codec.send(room, b"still here"))
    assert bob.event() == codec.RoomMessage(room, 1, b"still here")
    log = server.log()
    assert log.count("room handler joined failed") == 1  # two failures, logged once
    assert "RuntimeError: boom in joined" in log
    assert log.count("RuntimeError: boom in datagram_received") <= 1
