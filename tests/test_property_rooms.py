"""A stateful property test of rooms, driven through the real login protocol and UDP path.

Random sequences of creates, joins, join_or_creates, leaves, relays over TCP
and UDP, handler kicks and closes, sessions that end and the passing of time
keep three things true after every step:

- the manager's indexes agree with each other (rooms, types, memberships,
  member count) and hold no ended session and no closed room;
- every client's picture of its rooms, built only from the events it received
  (room_joined, room_presence, room_left), equals the server's rooms: no
  presence event lost, duplicated or out of order;
- every relay reached exactly the other members of the sender's room, each
  copy stamped with the sender's member id: nothing crosses rooms.
"""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gamesession.protocol import rooms as codec
from gamesession.protocol.datagram import Kind
from gamesession.server.roomhandler import RelayRoom
from gamesession.server.rooms import RoomManager

from fakes import Harness

pytestmark = pytest.mark.timeout(600)

USERS = ["ann", "ben", "cat", "dan", "eve"]
TYPES = ["dm", "host"]


class Host(RelayRoom):
    """Relays; kicks a member who sends b"kick me"; closes on b"close"."""

    def message_received(self, room, member, payload, to):
        if payload == b"kick me":
            room.kick(member.member_id)
        elif payload == b"close":
            room.close("asked")
        else:
            room.relay_message(member, payload, to)


class Client:
    def __init__(self, harness, user, port):
        self.conn, self.session = harness.logged_in(user, port=port)
        self.address = ("192.0.2.{}".format(port % 200 + 1), port)
        self.user = user
        self.view = {}  # room id -> {member id: user}, from events only
        self.me = {}  # room id -> my member id
        self.rid = 0
        self.received = []  # (room, from, data, channel)

    def absorb(self):
        for event in self.conn.room_events():
            if isinstance(event, codec.RoomJoined):
                assert event.room not in self.view
                self.view[event.room] = {m.member: m.user for m in event.members}
                self.me[event.room] = event.member
                assert not event.more
            elif isinstance(event, codec.RoomPresence):
                members = self.view[event.room]
                if event.event == "join":
                    assert event.member not in members
                    members[event.member] = event.user
                else:
                    assert members.pop(event.member) == event.user
            elif isinstance(event, codec.RoomLeft):
                del self.view[event.room]
                del self.me[event.room]
            elif isinstance(event, codec.RoomMessage):
                assert event.room in self.view  # never a message of a room one is not in
                self.received.append((event.room, event.sender, event.data, "tcp"))


class RoomsMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.harness = Harness()
        self.registry = self.harness.registry
        self.manager = RoomManager(self.registry, handlers={"host": Host},
                                   max_rooms=4, max_rooms_per_session=2, max_room_members=3,
                                   relay_rate=0, random_bytes=self._room_ids())
        self.registry.rooms = self.manager
        self.ports = iter(range(41000, 60000))
        self.clients = {}
        self.known_rooms = []
        for user in USERS:
            self.login(user)

    @staticmethod
    def _room_ids():
        """Room ids in creation order: hypothesis must draw the same way on a replay."""
        serial = iter(range(1, 2 ** 32))
        return lambda size: next(serial).to_bytes(size, "big")

    def login(self, user):
        client = Client(self.harness, user, next(self.ports))
        self.registry.datagram_received(client.conn.core.datagram(Kind.KEEPALIVE), client.address)
        self.clients[user] = client

    def settle(self):
        for client in self.clients.values():
            client.absorb()
        for packet, address in self.harness.udp_sent():
            client = next((c for c in self.clients.values() if c.address == address), None)
            if client is None:
                continue
            kind, payload = client.conn.core.datagram_received(packet)
            if kind == Kind.ROOM_RELAY:
                relay = codec.unpack_room_relay(payload)
                assert relay.room in client.view
                client.received.append((relay.room, relay.sender, relay.data, "udp"))

    def request(self, user, make):
        client = self.clients[user]
        client.rid += 1
        client.conn.request(make(client.rid))
        self.settle()

    def rooms_of(self, user):
        return sorted(self.clients[user].view)

    # -- rules ---------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), room_type=st.sampled_from(TYPES),
          size=st.integers(1, 4), listed=st.booleans())
    def create(self, user, room_type, size, listed):
        before = len(self.manager.rooms)
        self.request(user, lambda rid: codec.create(rid, room_type, max_members=size,
                                                    listed=listed))
        if len(self.manager.rooms) > before:
            self.known_rooms.append(max(self.manager.rooms.values(), key=lambda r: r.serial).id)

    @precondition(lambda self: self.known_rooms)
    @rule(user=st.sampled_from(USERS), data=st.data())
    def join(self, user, data):
        room = data.draw(st.sampled_from(self.known_rooms))
        self.request(user, lambda rid: codec.join(rid, room))

    @rule(user=st.sampled_from(USERS), room_type=st.sampled_from(TYPES))
    def join_or_create(self, user, room_type):
        self.request(user, lambda rid: codec.join_or_create(rid, room_type, max_members=2))
        for room in self.clients[user].view:
            if room not in self.known_rooms:
                self.known_rooms.append(room)

    @rule(user=st.sampled_from(USERS), data=st.data())
    def leave(self, user, data):
        mine = self.rooms_of(user)
        room = data.draw(st.sampled_from(mine)) if mine else bytes(8)
        self.request(user, lambda rid: codec.leave(rid, room))

    @rule(user=st.sampled_from(USERS), data=st.data(), udp=st.booleans(),
          payload=st.sampled_from([b"hi", b"kick me", b"close"]), targeted=st.booleans())
    def send(self, user, data, udp, payload, targeted):
        client = self.clients[user]
        mine = self.rooms_of(user)
        if not mine:
            return
        room = data.draw(st.sampled_from(mine))
        others = sorted(m for m in client.view[room] if m != client.me[room])
        to = data.draw(st.lists(st.sampled_from(others + [99]), max_size=3)) if targeted and others else []
        for c in self.clients.values():
            c.received.clear()
        server_room = self.manager.rooms[room]
        is_host = server_room.room_type == "host"
        if udp:
            self.registry.datagram_received(client.conn.core.datagram(
                Kind.ROOM_SEND, codec.pack_room_send(room, payload, to)), client.address)
        else:
            client.conn.request(codec.send(room, payload, to))
        expected_receivers = {u for u, c in self.clients.items() if room in c.view and u != user
                              and (not to or c.me[room] in to)}
        if is_host and not udp and payload != b"hi":
            expected_receivers = set()
        self.settle()
        got = {u for u, c in self.clients.items() for (r, _, d, _) in c.received if d == payload}
        assert got == expected_receivers
        for c in self.clients.values():
            for r, sender, d, channel in c.received:
                assert r == room and sender == client.me.get(room, sender)
                assert channel == ("udp" if udp else "tcp")

    @rule(user=st.sampled_from(USERS), how=st.sampled_from(["lose", "logout", "kick", "relogin"]))
    def end_session(self, user, how):
        client = self.clients[user]
        if how == "lose":
            client.conn.lose()
        elif how == "logout":
            client.conn.send(client.conn.core.logout())
        elif how == "kick":
            client.session.kick()
        del self.clients[user]
        self.settle()
        self.login(user)
        self.settle()

    @rule(seconds=st.sampled_from([0.1, 1.0]))
    def time_passes(self, seconds):
        for client in self.clients.values():
            self.registry.datagram_received(client.conn.core.datagram(Kind.KEEPALIVE), client.address)
        self.harness.clock.advance(seconds)
        self.settle()

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def indexes_agree(self):
        m = self.manager
        assert sum(len(r.members) for r in m.rooms.values()) == m.member_count
        assert sorted(m.rooms) == sorted(i for t in m.by_type.values() for i in t)
        assert len(m.rooms) <= m.max_rooms
        for room_id, room in m.rooms.items():
            assert not room.closing and room.members  # no linger here: empty rooms close
            assert len(room.members) <= room.max_members
            for member_id, member in room.members.items():
                assert member.member_id == member_id < room.next_member
                assert m.memberships[member.session][room_id] is member
                assert not member.session.ended
        for session, mine in m.memberships.items():
            assert mine and len(mine) <= m.max_rooms_per_session
            assert not session.ended
            for room_id, member in mine.items():
                assert m.rooms[room_id].members[member.member_id] is member

    @invariant()
    def listings_file_every_room_where_its_state_says(self):
        m = self.manager
        assert sorted(m.listings) == sorted(m.by_type)
        for room_type, (listed, seats) in m.listings.items():
            rooms = m.by_type[room_type].values()
            want_listed = {(r.id, len(r.members)) for r in rooms if r.listed}
            want_seats = {(r.id, len(r.members)) for r in rooms
                          if r.listed and len(r.members) < r.max_members}
            assert {(i, c) for c, b in listed.by_count.items() for i in b} == want_listed
            assert {(i, c) for c, b in seats.by_count.items() for i in b} == want_seats
            assert all(listed.by_count.values()) and all(seats.by_count.values())

    @invariant()
    def every_client_sees_the_server_rooms(self):
        for user, client in self.clients.items():
            server_view = {member.room.id: {mid: mem.user for mid, mem in member.room.members.items()}
                           for member in self.manager.rooms_of(client.session)}
            assert client.view == server_view, user


TestRooms = RoomsMachine.TestCase
TestRooms.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
