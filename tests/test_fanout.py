"""The room relay's fan-out (SessionRegistry.fan_out): one pass, one hand-over to the port.

In memory (the Harness, fake UDP transport) for the sealing rules; on a real
game port bound to 127.0.0.1, driven by hand, for the system calls: a
fan-out outside a read batch is one ``sendmmsg``, inside one it joins the
batch's flush, and the plain path delivers the same copies.
"""

import select
import socket

import pytest
from twisted.internet import reactor as real_reactor
from twisted.internet import udp

from gamesession import mmsg
from gamesession.protocol import rooms as codec
from gamesession.protocol.datagram import Kind
from gamesession.server.gameport import BatchedPort, GamePort
from gamesession.server.rooms import RoomManager

from conftest import need
from fakes import Harness
from test_rooms import Player, Server

pytestmark = pytest.mark.timeout(20)

USERS = ("alice",) + tuple("r{}".format(i) for i in range(8))


def counter_of(packet):
    return int.from_bytes(packet[8:16], "little")


def a_room(server):
    """Every player of ``server`` in one room; (room, sender's Member)."""
    first, *others = server.players
    room_id = first.create().room
    for player in others:
        player.join(room_id)
    for player in server.players:
        player.events()  # the presence events of the joins
    room = server.rooms.find(room_id)
    sender = next(m for m in room.members.values() if m.session is first.session)
    server.harness.udp_sent()
    return room, sender


def test_every_copy_opens_with_its_receivers_key_and_counters_never_repeat():
    server = Server(users=USERS)
    room, sender = a_room(server)
    alice, receivers = server.players[0], server.players[1:]
    by_address = {p.address: p for p in receivers}
    seen = {p.user: [] for p in receivers}

    def check(sent, expect_kind):
        for packet, address in sent:
            player = by_address[address]
            assert packet[:8] == player.session.token
            seen[player.user].append(counter_of(packet))
            # Opens with the receiver's own key (the client core also checks replay).
            kind, _ = player.core.datagram_received(packet)
            assert kind == expect_kind
            for other in receivers:
                if other is not player:
                    with pytest.raises(Exception):
                        other.core.channel.open(counter_of(packet), packet[16:])

    for round_ in range(3):
        alice.room_datagram(room.id, b"move %d" % round_)  # relayed: fan-out of 8
        check(server.harness.udp_sent(), Kind.ROOM_RELAY)
        assert room.send_datagram(b"tick %d" % round_, to=[m for m in room.members
                                                        if m != sender.member_id]) == 8
        check(server.harness.udp_sent(), Kind.ROOM_RELAY)
        assert room.relay_datagram(sender, b"from the handler") == 8
        check(server.harness.udp_sent(), Kind.ROOM_RELAY)
        for player in receivers:  # ordinary sends in between take counters too
            assert player.session.send_datagram(b"own")
        check(server.harness.udp_sent(), Kind.DATA)
    for user, counters in seen.items():
        assert counters == sorted(set(counters)), (user, counters)  # unique, increasing
        assert len(counters) == 12
    assert server.stats.rooms.relayed["udp_out"] == 3 * 3 * 8
    assert server.stats.udp_out_packets >= 3 * 4 * 8


def test_a_fan_out_skips_members_with_no_address_yet_and_counts_them():
    server = Server(users=USERS[:4])
    room, sender = a_room(server)
    late = server.players[3].session
    late.address = None  # as a member that has not sent a datagram yet
    before = late.send_counter
    out_before = server.stats.udp_out_packets
    assert room.relay_datagram(sender, b"x") == 2
    assert late.send_counter == before  # no counter spent on a copy that cannot leave
    assert len(server.harness.udp_sent()) == 2
    assert server.stats.udp_out_packets == out_before + 2
    assert server.stats.rooms.relayed["udp_no_address"] == 1


# -- on a real game port -------------------------------------------------------------------


class RecordingLibc:
    """mmsg's libc with every sendmmsg call recorded as its message count."""

    def __init__(self, libc):
        self.libc = libc
        self.sendmmsg_calls = []

    def sendmmsg(self, fd, vector, count, flags):
        self.sendmmsg_calls.append(count)
        return self.libc.sendmmsg(fd, vector, count, flags)

    def recvmmsg(self, *args):
        return self.libc.recvmmsg(*args)


class LoopbackRoom:
    """Nine players with real UDP sockets on 127.0.0.1, in one room, on a real game port."""

    def __init__(self, udp_io):
        self.harness = Harness()
        registry = self.harness.registry
        registry.rooms = RoomManager(registry)
        protocol = GamePort(registry)
        if udp_io == "batched":
            self.port = BatchedPort(0, protocol, "127.0.0.1", reactor=real_reactor)
        else:
            self.port = udp.Port(0, protocol, "127.0.0.1", reactor=real_reactor)
        self.port.startListening()
        real_reactor.removeReader(self.port)  # driven by hand
        assert registry.transport is self.port
        self.address = ("127.0.0.1", self.port.getHost().port)
        self.sockets = []
        self.players = []
        for index, user in enumerate(USERS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.sockets.append(sock)
            # Player sends its first KEEPALIVE straight to the registry from this address.
            self.players.append(Player(self.harness, user, index, address=sock.getsockname()))
        first, *others = self.players
        room_id = first.create().room
        for player in others:
            player.join(room_id)
        self.room = registry.rooms.find(room_id)
        self.sender = next(m for m in self.room.members.values() if m.session is first.session)
        self.drain()

    def drain(self):
        """{user: [packet, ...]} of what each player's socket received."""
        got = {}
        user_of = {sock: player.user for player, sock in zip(self.players, self.sockets)}
        # Loopback delivers at once; read until the sockets stay quiet for 0.1 s.
        while True:
            ready = select.select(self.sockets, [], [], 0.1)[0]
            if not ready:
                return got
            for sock in ready:
                got.setdefault(user_of[sock], []).append(sock.recv(65536))

    def opened(self, got):
        """{user: [(kind, payload), ...]}, each opened by its receiver's own client core."""
        by_user = {p.user: p for p in self.players}
        return {user: [by_user[user].core.datagram_received(packet) for packet in packets]
                for user, packets in got.items()}

    def close(self):
        self.port.stopListening()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def loopback_room():
    rooms = []

    def make(udp_io):
        if udp_io == "batched":
            need(mmsg.available(), "recvmmsg/sendmmsg are Linux-only")
        rooms.append(LoopbackRoom(udp_io))
        return rooms[-1]

    yield make
    for room in rooms:
        room.close()


def relay_frame(room, sender, data):
    return (Kind.ROOM_RELAY, codec.pack_room_relay(room.id, sender, data))


def test_a_fan_out_outside_a_read_batch_is_one_sendmmsg(loopback_room, monkeypatch):
    server = loopback_room("batched")
    libc = RecordingLibc(mmsg._LIBC)
    monkeypatch.setattr(mmsg, "_LIBC", libc)
    sendto_calls = []
    real_sendto = server.port._sendto
    server.port._sendto = lambda packet, address: (sendto_calls.append(address),
                                                   real_sendto(packet, address))
    # A handler's tick or a timer: not inside any read batch.
    assert server.room.relay_datagram(server.sender, b"snapshot") == 8
    assert libc.sendmmsg_calls == [8] and sendto_calls == []
    opened = server.opened(server.drain())
    assert sorted(opened) == sorted(USERS[1:])
    for user, datagrams in opened.items():
        assert datagrams == [relay_frame(server.room, server.sender.member_id, b"snapshot")]
    # To every member as the room: one call again.
    assert server.room.send_datagram(b"all") == 9
    assert libc.sendmmsg_calls == [8, 9] and sendto_calls == []
    assert sorted(server.opened(server.drain())) == sorted(USERS)


def test_a_fan_out_inside_a_read_batch_joins_the_batch_flush(loopback_room, monkeypatch):
    server = loopback_room("batched")
    alice, bob = server.players[0], server.players[1]
    alice_socket = server.sockets[0]
    libc = RecordingLibc(mmsg._LIBC)
    monkeypatch.setattr(mmsg, "_LIBC", libc)
    # Two ROOM_SENDs and a PING in one read batch: 8 + 8 copies and a PONG, one flush.
    alice_socket.sendto(alice.core.datagram(
        Kind.ROOM_SEND, codec.pack_room_send(server.room.id, b"one")), server.address)
    alice_socket.sendto(alice.core.datagram(Kind.PING, b"12345678"), server.address)
    alice_socket.sendto(alice.core.datagram(
        Kind.ROOM_SEND, codec.pack_room_send(server.room.id, b"two")), server.address)
    select.select([server.port.socket], [], [], 1.0)
    server.port.doRead()
    assert libc.sendmmsg_calls == [17]
    opened = server.opened(server.drain())
    assert opened["alice"] == [(Kind.PONG, b"12345678")]
    assert opened[bob.user] == [relay_frame(server.room, server.sender.member_id, b"one"),
                                relay_frame(server.room, server.sender.member_id, b"two")]
    assert len(opened) == 9 and server.harness.stats.rooms.relayed["udp_out"] == 16


def test_the_plain_port_delivers_the_same_copies(loopback_room):
    server = loopback_room("plain")
    assert server.room.relay_datagram(server.sender, b"snapshot") == 8
    opened = server.opened(server.drain())
    assert sorted(opened) == sorted(USERS[1:])
    for datagrams in opened.values():
        assert datagrams == [relay_frame(server.room, server.sender.member_id, b"snapshot")]
    alice = server.players[0]
    server.sockets[0].sendto(alice.core.datagram(
        Kind.ROOM_SEND, codec.pack_room_send(server.room.id, b"relayed")), server.address)
    select.select([server.port.socket], [], [], 1.0)
    server.port.doRead()
    opened = server.opened(server.drain())
    assert sorted(opened) == sorted(USERS[1:])
    assert server.harness.stats.rooms.relayed["udp_out"] == 16
    assert server.harness.stats.dropped.get("send_error", 0) == 0


# -- the TCP relay ----------------------------------------------------------------------------


def counting_encode(monkeypatch):
    """Count ``wire.encode`` calls by message type (rooms and login use the module's)."""
    from collections import Counter

    from gamesession.protocol import wire

    counts = Counter()
    real = wire.encode

    def encode(message):
        counts[message.get("type")] += 1
        return real(message)

    monkeypatch.setattr(wire, "encode", encode)
    return counts


def test_a_tcp_relay_is_encoded_once_and_sealed_per_member(monkeypatch):
    server = Server(users=USERS)
    room, sender = a_room(server)
    alice, receivers = server.players[0], server.players[1:]
    counts = counting_encode(monkeypatch)
    alice.request(codec.send(room.id, b"chat"))
    assert counts["room_message"] == 1
    assert counts["sealed"] == 1 + 8  # the request, then each copy in its member's stream
    for player in receivers:
        assert player.events() == [codec.RoomMessage(room.id, sender.member_id, b"chat")]
    counts.clear()
    assert room.send_message(b"from the room") == 9
    assert counts["room_message"] == 1 and counts["sealed"] == 9
    for player in server.players:
        assert player.events() == [codec.RoomMessage(room.id, codec.HANDLER, b"from the room")]


def test_a_presence_event_is_encoded_once_for_the_room(monkeypatch):
    server = Server(users=USERS)
    room, _ = a_room(server)
    counts = counting_encode(monkeypatch)
    server.players[-1].leave(room.id)
    assert counts["room_presence"] == 1 and counts["room_left"] == 1
    for player in server.players[:-1]:
        [event] = player.events()
        assert isinstance(event, codec.RoomPresence) and event.event == "leave"


class FailingUDP:
    """A UDP transport whose write fails for one address (a full buffer, a bad route)."""

    def __init__(self, bad):
        self.bad = bad
        self.sent = []

    def write(self, packet, address):
        if address == self.bad:
            raise OSError("no buffer space")
        self.sent.append((packet, address))


def test_a_copy_that_cannot_be_sent_is_counted_and_the_others_go():
    server = Server(users=USERS[:4])
    room, sender = a_room(server)
    bad = server.players[2]
    server.registry.transport = udp_ = FailingUDP(bad.address)
    assert room.relay_datagram(sender, b"x") == 3  # handed to the port, as Session.send counts
    assert sorted(a for _, a in udp_.sent) == sorted(p.address for p in server.players[1:]
                                                     if p is not bad)
    assert server.stats.dropped["send_error"] == 1


def test_send_errors_add_up_over_fan_outs():
    server = Server(users=USERS[:4])
    room, sender = a_room(server)
    server.registry.transport = FailingUDP(server.players[2].address)
    for _ in range(3):
        room.relay_datagram(sender, b"x")
    assert server.stats.dropped["send_error"] == 3


def test_fan_out_books_every_copy_it_sends_and_skips_only_the_sessions_it_cannot_reach():
    server = Server(users=USERS[:5])
    a_room(server)
    registry, stats, clock = server.registry, server.stats, server.harness.clock
    sessions = [p.session for p in server.players[1:]]
    sessions[0].address = None  # first in line: skipping it must not stop the others
    registry.end(sessions[1], "kicked")
    server.harness.udp_sent()
    clock.advance(3.0)
    packets, size = stats.udp_out_packets, stats.udp_out_bytes
    assert registry.fan_out(sessions, Kind.DATA, b"state") == 2
    sent = server.harness.udp_sent()
    assert sorted(a for _, a in sent) == sorted(s.address for s in sessions[2:])
    assert stats.udp_out_packets == packets + 2
    assert stats.udp_out_bytes == size + sum(len(packet) for packet, _ in sent)
    # A fan-out counts as sending for the keepalive timer, as Session.send does.
    assert [s.last_sent for s in sessions[2:]] == [clock.seconds()] * 2
    assert sessions[0].last_sent < clock.seconds()
    # Nobody reachable: nothing sent, nothing booked.
    assert registry.fan_out(sessions[:2], Kind.DATA, b"x") == 0
    assert server.harness.udp_sent() == [] and stats.udp_out_packets == packets + 2
    # Without a transport nothing goes, and the count is of the sessions that could be reached.
    registry.transport = None
    assert registry.fan_out(sessions, Kind.DATA, b"x") == 2


def test_an_unsendable_copy_outside_a_read_batch_is_counted_on_the_batched_port(loopback_room):
    server = loopback_room("batched")
    server.players[3].session.address = ("::1", 5)  # not an IPv4 address: sendmmsg skips it
    assert server.room.relay_datagram(server.sender, b"x") == 8
    assert server.harness.stats.dropped["send_error"] == 1
    assert len(server.drain()) == 7


class PerMemberTick:
    """A tick that sends every member its own datagram, as an authoritative room's snapshots."""

    def tick(self, room, dt):
        for member_id in room.members:
            room.send_datagram(b"snapshot for %d" % member_id, to=(member_id,))


class PerMemberTickAtOnce(PerMemberTick):
    """The same snapshots through ``send_datagrams``."""

    def tick(self, room, dt):
        room.send_datagrams({m: b"snapshot for %d" % m for m in room.members})


@pytest.mark.parametrize("handler", [PerMemberTick, PerMemberTickAtOnce])
@pytest.mark.parametrize("udp_io", ["batched", "plain"])
def test_a_tick_sending_each_member_its_own_datagram_leaves_together(loopback_room, monkeypatch,
                                                                     udp_io, handler):
    server = loopback_room(udp_io)
    libc = RecordingLibc(mmsg._LIBC) if mmsg.available() else None
    if libc is not None:
        monkeypatch.setattr(mmsg, "_LIBC", libc)
    server.room.handler = handler()
    server.harness.registry.rooms._tick(server.room)
    if udp_io == "batched":
        # Nine different payloads, one system call, sent before the tick returned.
        assert libc.sendmmsg_calls == [9] and server.port._queue == []
    opened = server.opened(server.drain())
    assert sorted(opened) == sorted(USERS)
    for member_id, member in server.room.members.items():
        assert opened[member.user] == [relay_frame(server.room, codec.HANDLER,
                                                   b"snapshot for %d" % member_id)]


def test_a_sweeps_keepalives_leave_in_one_sendmmsg(loopback_room, monkeypatch):
    server = loopback_room("batched")
    libc = RecordingLibc(mmsg._LIBC)
    monkeypatch.setattr(mmsg, "_LIBC", libc)
    registry = server.harness.registry
    server.harness.clock.advance(registry.keepalive + 0.5)
    registry.sweep()
    assert libc.sendmmsg_calls == [9] and server.port._queue == []
    opened = server.opened(server.drain())
    assert sorted(opened) == sorted(USERS)
    assert all([kind for kind, _ in datagrams] == [Kind.PING] for datagrams in opened.values())


def test_send_datagrams_gives_each_member_its_own_payload_in_one_sendmmsg(loopback_room,
                                                                          monkeypatch):
    server = loopback_room("batched")
    libc = RecordingLibc(mmsg._LIBC)
    monkeypatch.setattr(mmsg, "_LIBC", libc)
    members = server.room.members
    late = next(m for m in members.values() if m is not server.sender)
    late.session.address = None  # has not sent a datagram yet
    payloads = {member_id: b"for %d" % member_id for member_id in members}
    payloads[999] = b"nobody"  # not a member: skipped
    assert server.room.send_datagrams(payloads) == 8
    assert libc.sendmmsg_calls == [8]
    opened = server.opened(server.drain())
    assert late.user not in opened and len(opened) == 8
    for member_id, member in members.items():
        if member is not late:
            assert opened[member.user] == [relay_frame(server.room, codec.HANDLER,
                                                       b"for %d" % member_id)]
    assert server.harness.stats.rooms.relayed["udp_no_address"] == 1
    # Too long for a datagram: refused before any copy is sealed (no counter spent).
    counters = {m: member.session.send_counter for m, member in members.items()}
    with pytest.raises(ValueError):
        server.room.send_datagrams([(m, b"x" * 9000 if m == late.member_id else b"ok")
                                    for m in members])
    assert {m: member.session.send_counter for m, member in members.items()} == counters
    assert server.drain() == {}


def test_send_each_seals_each_payload_for_its_session_and_refuses_an_oversize_one_first():
    server = Server(users=USERS[:4])
    a_room(server)
    registry = server.registry
    players = server.players[1:]
    assert registry.send_each(Kind.DATA, [(p.session, p.user.encode()) for p in players]) == 3
    got = {}
    for packet, address in server.harness.udp_sent():
        player = next(p for p in players if p.address == address)
        got[player.user] = player.core.datagram_received(packet)
    assert got == {p.user: (Kind.DATA, p.user.encode()) for p in players}
    counters = [p.session.send_counter for p in players]
    with pytest.raises(ValueError):
        registry.send_each(Kind.DATA, [(players[0].session, b"ok"),
                                       (players[1].session, bytes(9000))])
    assert [p.session.send_counter for p in players] == counters
    assert server.harness.udp_sent() == []
