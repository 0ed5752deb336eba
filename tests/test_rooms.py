"""Rooms on the server (server/rooms.py): synchronous, fake transports, task.Clock.

Clients here are the test harness's connections; room frames are read with the
room codec so these tests do not depend on the client library.
"""

import pytest

from gamesession.protocol import rooms as codec
from gamesession.protocol.datagram import Drop, Kind
from gamesession.protocol.handshake import StreamCipher
from gamesession.protocol.wire import ErrorCode
from gamesession.server.roomhandler import RelayRoom
from gamesession.server.rooms import RoomManager
from fakes import Harness

Joined, Left, Presence, Message = codec.RoomJoined, codec.RoomLeft, codec.RoomPresence, codec.RoomMessage


class Player:
    """A logged-in harness connection with a UDP address, speaking rooms."""

    def __init__(self, harness, user, index, address=None):
        self.harness = harness
        self.user = user
        self.address = address or ("198.51.100.{}".format(10 + index), 50000 + index)
        self.conn, self.session = harness.logged_in(user, port=40000 + index)
        self.core = self.conn.core
        self.udp(Kind.KEEPALIVE)
        self.rid = 0

    def request(self, message):
        self.conn.request(message)
        return self.events()

    def events(self):
        return self.conn.room_events()

    def next_rid(self):
        self.rid += 1
        return self.rid

    def create(self, room_type="dm", **kw):
        [joined] = self.request(codec.create(self.next_rid(), room_type, **kw))
        assert isinstance(joined, Joined) and joined.created, joined
        return joined

    def join(self, room, **kw):
        return self.request(codec.join(self.next_rid(), room, **kw))

    def joc(self, room_type="dm", **kw):
        return self.request(codec.join_or_create(self.next_rid(), room_type, **kw))

    def leave(self, room):
        return self.request(codec.leave(self.next_rid(), room))

    def udp(self, kind, payload=b""):
        self.harness.registry.datagram_received(self.core.datagram(kind, payload), self.address)

    def room_datagram(self, room, data, to=()):
        self.udp(Kind.ROOM_SEND, codec.pack_room_send(room, data, to))


class Server:
    def __init__(self, users=("alice", "bob", "carol", "dave"), handlers=None,
                 registry_options=None, **options):
        self.harness = Harness(**(registry_options or {}))
        self.registry = self.harness.registry
        self.clock = self.harness.clock
        self.stats = self.harness.stats
        self.registry.rooms = RoomManager(self.registry, handlers=handlers, **options)
        self.rooms = self.registry.rooms
        self.players = [Player(self.harness, user, i) for i, user in enumerate(users)]
        self.harness.udp_sent()

    def relays(self):
        """Every ROOM_RELAY the server sent since the last call: (receiver user, RoomDatagram)."""
        out = []
        for packet, address in self.harness.udp_sent():
            player = next(p for p in self.players if p.address == address)
            kind, payload = player.core.datagram_received(packet)
            if kind == Kind.ROOM_RELAY:
                out.append((player.user, codec.unpack_room_relay(payload)))
        return out


@pytest.fixture
def server():
    return Server()


def errors(events):
    return [(e.code, e.rid) for e in events if isinstance(e, codec.RoomError)]


# -- create, join, join_or_create, leave, list ------------------------------------------


def test_create_answers_room_joined_with_you_as_member_1(server):
    alice = server.players[0]
    joined = alice.create("deathmatch", label={"map": "q2dm1"}, max_members=4)
    assert joined == Joined(1, joined.room, "deathmatch", 1, {"map": "q2dm1"}, 4, True, True,
                            (codec.MemberInfo(1, "alice"),))
    assert len(joined.room) == 8 and server.rooms.find(joined.room).members[1].user == "alice"


def test_join_by_id_gives_the_member_list_and_tells_the_others(server):
    alice, bob, carol = server.players[:3]
    room = alice.create(listed=False).room
    [joined] = bob.join(room)
    assert (joined.member, joined.created, joined.listed) == (2, False, False)
    assert joined.members == (codec.MemberInfo(1, "alice"), codec.MemberInfo(2, "bob"))
    assert alice.events() == [Presence(room, "join", 2, "bob")]
    carol.join(room)
    assert alice.events() == bob.events() == [Presence(room, "join", 3, "carol")]


def test_member_ids_are_never_reused_within_a_room(server):
    alice, bob, carol = server.players[:3]
    room = alice.create().room
    bob.join(room)
    bob.leave(room)
    [joined] = carol.join(room)
    assert joined.member == 3
    [again] = bob.join(room)
    assert again.member == 4


def test_join_or_create_joins_the_fullest_open_listed_room_with_a_seat(server):
    alice, bob, carol, dave = server.players
    small = alice.create("dm").room
    big = bob.create("dm").room
    carol.join(big)
    full = dave.create("dm", max_members=1).room
    private = dave.create("dm", listed=False).room
    other_type = dave.create("ctf").room
    for p in server.players:
        p.events()
    [joined] = alice.joc("dm")
    assert joined.room == big and not joined.created
    assert {small, full, private, other_type}.isdisjoint({joined.room})


def test_join_or_create_creates_when_nothing_fits(server):
    alice, bob = server.players[:2]
    alice.create("dm", max_members=1)
    [joined] = bob.joc("dm", label={"mode": "ffa"}, max_members=3)
    assert joined.created and joined.label == {"mode": "ffa"} and joined.max_members == 3
    assert len(server.rooms.of_type("dm")) == 2


def test_join_or_create_skips_rooms_whose_handler_refuses(server):
    class Picky(RelayRoom):
        def join_attempt(self, room, session, options):
            if room.members and session.user == "carol":
                return "no carols"

    server = Server(handlers={"picky": Picky})
    alice, bob, carol = server.players[:3]
    first = alice.create("picky").room
    bob.join(first)
    [joined] = carol.joc("picky")
    assert joined.created and joined.room != first


def test_leave_answers_with_the_rid_tells_the_others_and_closes_the_empty_room(server):
    alice, bob = server.players[:2]
    room = alice.create().room
    bob.join(room)
    alice.events()
    assert bob.request(codec.leave(77, room)) == [Left(room, "left", 77)]
    assert alice.events() == [Presence(room, "leave", 2, "bob", "left")]
    alice.leave(room)
    assert server.rooms.find(room) is None and len(server.rooms) == 0
    assert server.rooms.member_count == 0 and server.rooms.memberships == {}


def test_list_shows_listed_open_rooms_of_the_type_fullest_first(server):
    alice, bob, carol, dave = server.players
    one = alice.create("dm", label={"n": 1}).room
    two = bob.create("dm", max_members=5).room
    carol.join(two)
    dave.create("dm", listed=False)
    dave.create("ctf")
    [answer] = alice.request(codec.list_rooms(5, "dm"))
    assert answer == codec.RoomList(5, (
        codec.RoomInfo(two, "dm", {}, 2, 5), codec.RoomInfo(one, "dm", {"n": 1}, 1, 64)))
    [empty] = alice.request(codec.list_rooms(6, "race"))
    assert empty == codec.RoomList(6, ())


def test_a_session_can_be_in_several_rooms(server):
    alice, bob = server.players[:2]
    a = alice.create("dm").room
    b = alice.create("chat").room
    bob.join(a)
    bob.join(b)
    assert sorted(m.room.id for m in server.rooms.rooms_of(bob.session)) == sorted([a, b])


# -- presence when sessions end ------------------------------------------------------------


@pytest.mark.parametrize("how, reason", [
    ("logout", "logout"), ("udp_disconnect", "logout"), ("lose", "disconnected"),
    ("kick", "kicked"), ("timeout", "timeout"), ("replaced", "replaced")])
def test_a_session_that_ends_leaves_its_rooms_with_its_reason(server, how, reason):
    alice, bob = server.players[:2]
    room = alice.create().room
    bob.join(room)
    alice.events()
    if how == "logout":
        bob.conn.send(bob.core.logout())
    elif how == "udp_disconnect":
        bob.udp(Kind.DISCONNECT)
    elif how == "lose":
        bob.conn.lose()
    elif how == "kick":
        bob.session.kick()
    elif how == "timeout":
        server.clock.advance(9)
        alice.udp(Kind.KEEPALIVE)
        server.clock.advance(1.5)
        server.registry.sweep()
    elif how == "replaced":
        server.harness.logged_in("bob", port=41000)
    assert alice.events() == [Presence(room, "leave", 2, "bob", reason)]
    assert server.rooms.rooms_of(bob.session) == [] and list(server.rooms.find(room).members) == [1]
    assert server.stats.rooms.leaves[reason] == 1


def test_a_member_that_is_gone_is_never_sent_to(server):
    alice, bob, carol = server.players[:3]
    room = alice.create().room
    bob.join(room)
    carol.join(room)
    bob.events()
    bob.conn.lose()
    server.harness.udp_sent()
    alice.room_datagram(room, b"after")
    alice.request(codec.send(room, b"after"))
    assert [user for user, _ in server.relays()] == ["carol"]
    assert bob.conn.messages() == []


# -- relay -----------------------------------------------------------------------------------


def three_in_a_room(server):
    alice, bob, carol = server.players[:3]
    room = alice.create().room
    bob.join(room)
    carol.join(room)
    for p in server.players:
        p.events()
    server.harness.udp_sent()
    return room, alice, bob, carol


def test_tcp_room_send_goes_to_all_others_stamped_with_the_sender(server):
    room, alice, bob, carol = three_in_a_room(server)
    assert alice.request(codec.send(room, b"hello")) == []
    assert bob.events() == carol.events() == [Message(room, 1, b"hello")]


def test_tcp_room_send_to_a_list_reaches_only_those(server):
    room, alice, bob, carol = three_in_a_room(server)
    carol.request(codec.send(room, b"psst", to=[1, 99]))
    assert alice.events() == [Message(room, 3, b"psst")]
    assert bob.events() == [] and carol.events() == []


def test_udp_room_datagrams_go_to_all_others_or_to_a_list(server):
    room, alice, bob, carol = three_in_a_room(server)
    bob.room_datagram(room, b"pos 1 2")
    assert sorted(server.relays(), key=lambda r: r[0]) == [
        ("alice", codec.RoomDatagram(room, 2, b"pos 1 2")),
        ("carol", codec.RoomDatagram(room, 2, b"pos 1 2"))]
    bob.room_datagram(room, b"to carol", to=[3])
    assert server.relays() == [("carol", codec.RoomDatagram(room, 2, b"to carol"))]
    assert server.stats.rooms.relayed["udp_in"] == 2 and server.stats.rooms.relayed["udp_out"] == 3


def test_relayed_datagrams_are_sealed_for_each_receiver_alone(server):
    room, alice, bob, carol = three_in_a_room(server)
    alice.room_datagram(room, b"secret move")
    sent = {address: packet for packet, address in server.harness.udp_sent()}
    to_bob, to_carol = sent[bob.address], sent[carol.address]
    # Each packet carries its receiver's token and opens only with its receiver's key.
    assert to_bob[:8] == bob.session.token and to_carol[:8] == carol.session.token
    for wrong, packet in ((carol, to_bob), (bob, to_carol)):
        with pytest.raises(Drop) as caught:
            wrong.core.channel.open(int.from_bytes(packet[8:16], "little"), packet[16:])
        assert caught.value.reason == "bad_box"
    assert bob.core.datagram_received(to_bob)[0] == Kind.ROOM_RELAY
    assert carol.core.datagram_received(to_carol)[0] == Kind.ROOM_RELAY
    # And the plaintext does not appear on the wire.
    assert b"secret move" not in to_bob and b"secret move" not in to_carol


def test_a_forged_sender_is_impossible_by_construction(server):
    """The sender's member id comes from the server's (session, room) table, nothing else.

    ROOM_SEND has no sender field at all; data made to look like another
    member's relay header is relayed as data, stamped with the real sender.
    A TCP room_send with a ``from`` member of its own gets it ignored.
    """
    room, alice, bob, carol = three_in_a_room(server)
    forged = codec.pack_room_relay(room, 1, b"I am alice")
    carol.udp(Kind.ROOM_SEND, room + bytes([1]) + (2).to_bytes(4, "little") + forged)
    [(user, relay)] = server.relays()
    assert (user, relay.sender, relay.data) == ("bob", 3, forged)
    message = codec.send(room, b"I am alice too")
    message["from"] = 1
    carol.request(message)
    assert alice.events() == bob.events() == [Message(room, 3, b"I am alice too")]


def test_nothing_leaks_across_rooms(server):
    alice, bob, carol, dave = server.players
    red = alice.create("dm").room
    bob.join(red)
    blue = carol.create("dm").room
    dave.join(blue)
    for p in server.players:
        p.events()
    server.harness.udp_sent()
    alice.request(codec.send(red, b"red only"))
    alice.room_datagram(red, b"red only")
    # Member ids are per room: "to 2" in red is bob, never dave (2 in blue).
    alice.room_datagram(red, b"red two", to=[2])
    # Alice is not in blue: her datagram and message for it go nowhere.
    alice.room_datagram(blue, b"intrusion")
    assert errors(alice.request(codec.send(blue, b"intrusion"))) == [(466, None)]
    bob.leave(red)
    assert carol.events() == dave.events() == []
    assert {user for user, _ in server.relays()} == {"bob"}
    assert server.stats.dropped["room_not_member"] == 1


def test_bad_room_datagrams_are_dropped_silently_and_counted(server):
    room, alice, bob, carol = three_in_a_room(server)
    alice.udp(Kind.ROOM_SEND, room[:5])
    alice.udp(Kind.ROOM_SEND, bytes(8) + b"\x00data")  # no such room
    alice.udp(Kind.ROOM_RELAY, codec.pack_room_relay(room, 2, b"x"))  # only servers relay
    assert server.harness.udp_sent() == []
    assert all(p.events() == [] and not p.conn.closed for p in (alice, bob, carol))
    assert server.stats.dropped["bad_room_datagram"] == 2
    assert server.stats.dropped["room_not_member"] == 1


def test_malformed_room_frames_are_fatal_like_any_malformed_frame(server):
    alice = server.players[0]
    alice.conn.request({"type": "room_create", "room_type": "dm"})  # no rid
    [error] = alice.conn.messages()
    assert error["type"] == "error" and error["code"] == ErrorCode.BAD_FIELD
    assert alice.conn.closed and alice.session.ended == "disconnected"


def test_room_requests_before_login_are_unexpected():
    harness = Harness()
    conn = harness.connect()
    conn.handshake()  # keys agreed, login not sent: the room request is the first sealed frame
    conn.core.sender = StreamCipher(conn.core.keys.tcp_c2s, 0)
    conn.request(codec.create(1, "dm"))
    [error] = conn.messages()
    assert error["code"] == ErrorCode.UNEXPECTED and conn.closed


# -- refusals: every code ------------------------------------------------------------------


def test_room_not_found_460(server):
    alice, bob = server.players[:2]
    assert errors(alice.join(bytes(8))) == [(460, 1)]
    alice.conn.request({"type": "room_join", "rid": 9, "room": "nothex"})
    assert errors(alice.events()) == [(460, 9)]
    room = bob.create().room
    bob.leave(room)
    assert errors(alice.join(room)) == [(460, 2)]
    assert not alice.conn.closed


def test_room_full_461(server):
    alice, bob, carol = server.players[:3]
    room = alice.create(max_members=2).room
    bob.join(room)
    assert errors(carol.join(room)) == [(461, 1)]
    assert server.stats.rooms.joins["room_full"] == 1


def test_room_refused_462_carries_the_handler_text():
    class Closed(RelayRoom):
        def join_attempt(self, room, session, options):
            if room.members and options.get("password") != "sesame":
                return "wrong password"

    server = Server(handlers={"vault": Closed})
    alice, bob = server.players[:2]
    room = alice.create("vault").room
    [refused] = bob.join(room)
    assert (refused.code, refused.reason) == (462, "wrong password")
    [joined] = bob.join(room, options={"password": "sesame"})
    assert joined.member == 2


def test_too_many_rooms_463():
    server = Server(max_rooms_per_session=2)
    alice, bob = server.players[:2]
    first = bob.create().room
    alice.create()
    alice.create()
    assert errors(alice.request(codec.create(9, "dm"))) == [(463, 9)]
    assert errors(alice.join(first)) == [(463, 3)]
    assert errors(alice.joc()) == [(463, 4)]
    assert server.stats.rooms.limited["max_rooms_per_session"] == 3


def test_rooms_exhausted_464():
    server = Server(max_rooms=2)
    alice, bob, carol = server.players[:3]
    alice.create()
    bob.create(max_members=1)
    assert errors(carol.request(codec.create(1, "dm"))) == [(464, 1)]
    [joined] = carol.joc()  # join_or_create can still join alice's room
    assert not joined.created
    assert errors(carol.request(codec.join_or_create(2, "ctf"))) == [(464, 2)]
    assert server.stats.rooms.limited["max_rooms"] == 2


def test_bad_label_465():
    server = Server(max_label_bytes=20)
    alice = server.players[0]
    assert errors(alice.request(codec.create(1, "dm", label={"k": "v" * 20}))) == [(465, 1)]
    alice.conn.request({"type": "room_create", "rid": 2, "room_type": "dm", "label": [1, 2]})
    assert errors(alice.events()) == [(465, 2)]
    assert server.stats.rooms.limited["max_label_bytes"] == 2
    assert not alice.conn.closed


def test_not_in_room_466(server):
    alice, bob = server.players[:2]
    room = alice.create().room
    assert errors(bob.request(codec.leave(4, room))) == [(466, 4)]
    assert errors(bob.request(codec.send(room, b"x"))) == [(466, None)]


def test_already_in_room_467(server):
    alice = server.players[0]
    room = alice.create().room
    assert errors(alice.join(room)) == [(467, 2)]


def test_bad_room_type_468(server):
    alice = server.players[0]
    assert errors(alice.request(codec.create(3, "no spaces"))) == [(468, 3)]
    assert errors(alice.request(codec.list_rooms(4, "x" * 33))) == [(468, 4)]
    assert server.stats.rooms.joins["bad_room_type"] == 1


def test_relay_limited_469_and_udp_relay_budget():
    server = Server(relay_rate=10.0)
    room, alice, bob, carol = three_in_a_room(server)
    for i in range(5):  # 2 copies each: 10 copies, the whole burst
        alice.request(codec.send(room, b"m%d" % i))
    assert len(bob.events()) == 5
    assert errors(alice.request(codec.send(room, b"one too many"))) == [(469, None)]
    assert bob.events() == [] and not alice.conn.closed
    alice.room_datagram(room, b"dropped too")
    assert server.relays() == []
    assert server.stats.dropped["relay_rate"] == 1
    server.clock.advance(0.2)  # 2 copies' worth
    alice.room_datagram(room, b"again")
    assert len(server.relays()) == 2
    # Another sender's budget is its own.
    bob.room_datagram(room, b"bob")
    assert len(server.relays()) == 2
    assert server.stats.rooms.limited["relay_rate"] == 2


def test_room_datagrams_count_against_the_senders_datagram_rate():
    server = Server(relay_rate=0, registry_options={"datagram_rate": 5.0, "datagram_burst": 5.0})
    room, alice, bob, carol = three_in_a_room(server)  # (players' KEEPALIVE took 1 token each)
    for i in range(8):
        alice.room_datagram(room, b"%d" % i)
    assert len(server.relays()) == 8  # 4 datagrams, 2 copies each
    assert server.stats.dropped["rate_limit"] == 4


def test_max_members_above_the_server_limit_is_clamped():
    server = Server(max_room_members=3)
    joined = server.players[0].create(max_members=100)
    assert joined.max_members == 3
    assert server.stats.rooms.limited["max_room_members"] == 1


# -- linger and close ---------------------------------------------------------------------------


def test_an_empty_room_lingers_then_closes():
    closed = []

    class Watch(RelayRoom):
        def room_closed(self, room, reason):
            closed.append(reason)

    server = Server(linger=5.0, handlers={"dm": Watch})
    alice, bob = server.players[:2]
    room = alice.create().room
    alice.leave(room)
    server.clock.advance(4.9)
    assert server.rooms.find(room) is not None
    [joined] = bob.join(room)  # a join during the linger keeps it
    assert joined.members == (codec.MemberInfo(2, "bob"),)
    server.clock.advance(10)
    assert server.rooms.find(room) is not None and closed == []
    bob.leave(room)
    server.clock.advance(5.0)
    assert server.rooms.find(room) is None and closed == ["empty"]


def test_a_handler_closes_its_room():
    class Short(RelayRoom):
        def message_received(self, room, member, payload, to):
            if payload == b"end":
                room.close("game over")

        def room_closed(self, room, reason):
            self.closed = reason

    server = Server(handlers={"short": Short})
    alice, bob = server.players[:2]
    room = alice.create("short").room
    bob.join(room)
    alice.events()
    handler = server.rooms.find(room).handler
    assert bob.request(codec.send(room, b"end")) == [Left(room, "closed")]
    assert alice.events() == [Left(room, "closed")]
    assert handler.closed == "game over"
    assert errors(alice.join(room)) == [(460, 2)]
    assert server.rooms.memberships == {} and server.rooms.member_count == 0


def test_shutdown_closes_every_room_before_sessions_end():
    seen = []

    class Watch(RelayRoom):
        def room_closed(self, room, reason):
            seen.append((reason, len(room.server.sessions)))

    server = Server(handlers={"dm": Watch})
    alice, bob = server.players[:2]
    room = alice.create().room
    bob.join(room)
    alice.events()
    server.registry.shutdown()
    assert seen == [("shutdown", 4)]
    assert alice.events() == [Left(room, "shutdown")]


# -- authoritative handlers ---------------------------------------------------------------------


class Counter(RelayRoom):
    """A server-authoritative toy: members add to a total; each tick broadcasts it."""

    def room_created(self, room):
        self.total = 0
        self.ticks = []

    def message_received(self, room, member, payload, to):
        self.total += int(payload)

    def tick(self, room, dt):
        self.ticks.append(round(dt, 6))
        room.send_message(b"total %d" % self.total)
        room.set_label({"total": self.total})


def test_a_ticking_handler_changes_state_and_broadcasts_it():
    server = Server(handlers={"counter": Counter}, tick_rates={"counter": 10})
    alice, bob = server.players[:2]
    room = alice.create("counter").room
    bob.join(room)
    alice.events()
    alice.request(codec.send(room, b"2"))
    bob.request(codec.send(room, b"3"))
    assert alice.events() == bob.events() == []  # authoritative: no relay
    server.clock.advance(0.1)
    expected = [Message(room, 0, b"total 5"), codec.RoomLabel(room, {"total": 5})]
    assert alice.events() == bob.events() == expected
    server.clock.pump([0.1, 0.1])
    assert len(alice.events()) == 4
    assert server.rooms.find(room).handler.ticks == [0.1, 0.1, 0.1]
    [listing] = alice.request(codec.list_rooms(1, "counter"))
    assert listing.rooms[0].label == {"total": 5}


def test_ticks_stop_when_the_room_closes():
    server = Server(handlers={"counter": Counter}, tick_rates={"counter": 10})
    alice = server.players[0]
    room = alice.create("counter").room
    handler = server.rooms.find(room).handler
    alice.leave(room)
    server.clock.pump([0.1] * 5)
    assert handler.ticks == [] and server.clock.getDelayedCalls() == []


def test_handler_sends_and_kicks():
    class Host(RelayRoom):
        def joined(self, room, member):
            room.send_datagram(b"welcome " + member.user.encode(), to=[member.member_id])
            if member.user == "carol":
                room.kick(member.member_id, "kicked")

    server = Server(handlers={"host": Host})
    alice, bob, carol = server.players[:3]
    room = alice.create("host").room
    bob.join(room)
    assert alice.events() == [Presence(room, "join", 2, "bob")]
    [joined, kicked] = carol.join(room)
    assert kicked == Left(room, "kicked")
    assert alice.events() == [Presence(room, "join", 3, "carol"),
                              Presence(room, "leave", 3, "carol", "kicked")]
    assert [(u, r.sender, r.data) for u, r in server.relays()] == [
        ("alice", 0, b"welcome alice"), ("bob", 0, b"welcome bob"), ("carol", 0, b"welcome carol")]


class Broken(RelayRoom):
    def joined(self, room, member):
        raise RuntimeError("joined is broken")

    def message_received(self, room, member, payload, to):
        raise RuntimeError("messages are broken")

    def tick(self, room, dt):
        raise RuntimeError("tick is broken")


def test_a_handler_that_raises_is_logged_once_counted_and_the_room_goes_on(server):
    server = Server(handlers={"broken": Broken}, tick_rates={"broken": 10})
    alice, bob = server.players[:2]
    logged = []
    from twisted.logger import globalLogPublisher

    def observe(event):
        if event.get("event") == "room_handler_error":
            logged.append((event["method"], event["log_failure"].value))

    globalLogPublisher.addObserver(observe)
    try:
        room = alice.create("broken").room
        bob.join(room)
        for _ in range(3):
            alice.request(codec.send(room, b"x"))
        server.clock.pump([0.1] * 3)
        assert [m for m, _ in logged] == ["joined", "message_received", "tick"]
        assert server.stats.rooms.handler_errors == {"joined": 2, "message_received": 3, "tick": 3}
        bob.room_datagram(room, b"still relays")
        assert [u for u, _ in server.relays()] == ["alice"]
        assert not alice.conn.closed and server.rooms.find(room) is not None
    finally:
        globalLogPublisher.removeObserver(observe)


def test_a_join_attempt_that_raises_refuses_the_join():
    class Raises(RelayRoom):
        def join_attempt(self, room, session, options):
            if session.user == "bob":
                raise KeyError("oops")

    server = Server(handlers={"r": Raises})
    alice, bob = server.players[:2]
    room = alice.create("r").room
    [refused] = bob.join(room)
    assert (refused.code, refused.reason) == (462, "room handler failed")
    assert errors(bob.request(codec.create(8, "r"))) == [(462, 8)]
    assert len(server.rooms) == 1 and not bob.conn.closed


def test_a_handler_factory_that_raises_refuses_the_create():
    def factory():
        raise RuntimeError("cannot")

    server = Server(handlers={"x": factory})
    assert errors(server.players[0].request(codec.create(1, "x"))) == [(462, 1)]
    assert len(server.rooms) == 0


# -- game access to sessions ---------------------------------------------------------------------


def test_the_game_finds_sessions_by_user_and_lists_them(server):
    sessions = server.rooms.server.sessions
    assert sessions.find("bob") is server.players[1].session
    assert sessions.find("nobody") is None
    assert sorted(s.user for s in sessions.all()) == ["alice", "bob", "carol", "dave"]
    server.players[1].conn.lose()
    assert sessions.find("bob") is None and len(sessions) == 3


def test_handlers_reach_the_sessions_through_the_room():
    class Greeter(RelayRoom):
        def joined(self, room, member):
            other = room.server.sessions.find("dave")
            if other is not None:
                other.send_message(b"someone joined " + room.room_type.encode())

    server = Server(handlers={"g": Greeter})
    server.players[0].create("g")
    [frame] = server.players[3].conn.messages()
    assert frame["type"] == "data"


# -- metrics ------------------------------------------------------------------------------------


def test_room_figures_move_in_metrics():
    server = Server(max_rooms_per_session=1, handlers={"broken": Broken})
    figure = server.harness.figure

    assert figure("gamesession_rooms_active") == 0
    assert figure("gamesession_room_joins_total", outcome="room_full") == 0
    room, alice, bob, carol = three_in_a_room(server)
    assert figure("gamesession_rooms_active") == 1 and figure("gamesession_room_members") == 3
    assert figure("gamesession_room_joins_total", outcome="created") == 1
    assert figure("gamesession_room_joins_total", outcome="joined") == 2
    alice.room_datagram(room, b"x")
    alice.request(codec.send(room, b"y"))
    assert figure("gamesession_room_relayed_total", channel="udp", direction="in") == 1
    assert figure("gamesession_room_relayed_total", channel="udp", direction="out") == 2
    assert figure("gamesession_room_relayed_total", channel="tcp", direction="in") == 1
    assert figure("gamesession_room_relayed_total", channel="tcp", direction="out") == 2
    alice.request(codec.create(9, "dm"))
    assert figure("gamesession_room_limited_total", limit="max_rooms_per_session") == 1
    assert figure("gamesession_room_joins_total", outcome="too_many_rooms") == 1
    carol.conn.lose()
    assert figure("gamesession_room_leaves_total", reason="disconnected") == 1
    assert figure("gamesession_room_members") == 2
    server.players[3].create("broken")
    assert figure("gamesession_room_handler_errors_total", method="joined") == 1
    # Refusals are not protocol errors: the connection stayed open.
    samples = server.harness.figures()
    assert not any(name == "gamesession_protocol_errors_total" and "room" in str(labels)
                   for name, labels in samples)


def readme_handler():
    """The handler example of README.md, "Rooms", as the README shows it."""
    import os
    import re

    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        text = f.read()
    section = text[text.index("## Rooms"):text.index("## Operations")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["Race"]


def test_the_readme_handler_example_works():
    server = Server(handlers={"race": readme_handler()}, tick_rates={"race": 20})
    alice, bob, carol = server.players[:3]
    room = alice.create("race").room
    bob.join(room)
    alice.events()
    server.clock.advance(0.05)
    assert sorted(d.data for _, d in server.relays()) == [b"1:0,2:0"] * 2
    alice.request(codec.send(room, b"lap"))
    [refused] = carol.join(room)
    assert (refused.code, refused.reason) == (462, "race already started")
    alice.request(codec.send(room, b"lap"))
    alice.request(codec.send(room, b"lap"))
    assert bob.events() == [Message(room, 0, b"alice wins"), Left(room, "closed")]
    assert server.rooms.find(room) is None


# -- handlers that change the room under the manager's feet ---------------------------------------


def test_a_handler_that_closes_its_room_while_it_is_made_refuses_the_create():
    class Stillborn(RelayRoom):
        def room_created(self, room):
            room.close("no")

    server = Server(handlers={"s": Stillborn})
    assert errors(server.players[0].request(codec.create(1, "s"))) == [(462, 1)]
    assert len(server.rooms) == 0 and server.rooms.by_type == {}


def test_a_handler_that_closes_or_fills_the_room_in_join_attempt_refuses_the_join():
    class Fickle(RelayRoom):
        def join_attempt(self, room, session, options):
            if session.user == "bob":
                room.close("bob scares me")

    server = Server(handlers={"f": Fickle})
    alice, bob = server.players[:2]
    room = alice.create("f").room
    assert errors(bob.join(room)) == [(460, 1)]
    assert alice.events() == [Left(room, "closed")]
    assert server.rooms.memberships == {} and server.rooms.member_count == 0


def test_a_handler_that_closes_its_room_in_a_tick():
    class Timer(RelayRoom):
        def tick(self, room, dt):
            room.close("time up")

    server = Server(handlers={"t": Timer}, tick_rates={"t": 4})
    alice = server.players[0]
    room = alice.create("t").room
    server.clock.pump([0.25] * 4)
    assert alice.events() == [Left(room, "closed")]
    assert server.clock.getDelayedCalls() == [] and len(server.rooms) == 0


def test_leaving_and_joining_again_does_not_refill_the_relay_budget():
    server = Server(relay_rate=4.0)
    room, alice, bob, carol = three_in_a_room(server)
    alice.room_datagram(room, b"1")
    alice.room_datagram(room, b"2")  # 4 copies: the burst is spent
    assert len(server.relays()) == 4
    alice.leave(room)
    bob.events()
    carol.events()
    alice.join(room)
    alice.room_datagram(room, b"3")
    assert server.relays() == []


def test_a_long_room_list_is_cut_to_one_frame_and_says_more():
    server = Server(users=["u%d" % i for i in range(120)], max_rooms_per_session=1)
    for player in server.players:
        player.create("crowd", label={"name": "x" * 50})
    [answer] = server.players[0].request(codec.list_rooms(1, "crowd"))
    assert answer.more and 10 < len(answer.rooms) < 120


def test_a_joiner_cut_off_while_its_room_joined_is_written_leaves_in_order():
    """A client that does not read is aborted mid-join (--max-send-buffer): the others see
    its join and then its leave, and the handler sees neither (it never saw it join)."""
    from gamesession.server.limits import Limits

    calls = []

    class Record(RelayRoom):
        def joined(self, room, member):
            calls.append(("joined", member.user))

        def left(self, room, member, reason):
            calls.append(("left", member.user, reason))

    server = Server(handlers={"dm": Record}, registry_options={"limits": Limits(max_send_buffer=60)})
    alice, bob = server.players[:2]
    room = alice.create().room
    bob.conn.protocol.pauseProducing()  # bob's transport is full: what the server writes queues
    bob.conn.request(codec.join(1, room))
    assert bob.session.ended == "disconnected"
    assert alice.events() == [Presence(room, "join", 2, "bob"),
                              Presence(room, "leave", 2, "bob", "disconnected")]
    assert calls == [("joined", "alice")]
    assert list(server.rooms.find(room).members) == [1]


def test_status_summarizes_the_rooms():
    from gamesession.client.status import Figures, summarize
    from prometheus_client import generate_latest

    server = Server(relay_rate=1.0)
    room, alice, bob, carol = three_in_a_room(server)
    alice.room_datagram(room, b"x")  # 2 copies, over a budget of 1: dropped
    bob.request(codec.send(room, b"y", to=[1]))
    lines = summarize(Figures(generate_latest(server.harness.collectors).decode()))
    assert lines[-1] == ("rooms: 1 active, 3 members; relayed udp 1 in / 0 out, tcp 1 in / 1 out; "
                         "1 limited (relay_rate 1), 0 handler errors")


def test_rooms_and_handlers_provide_their_documented_interfaces(server):
    from zope.interface.verify import verifyObject

    from gamesession.server.roomhandler import IRoom, IRoomHandler

    room = server.rooms.find(server.players[0].create().room)
    assert verifyObject(IRoom, room)
    assert verifyObject(IRoomHandler, RelayRoom())


def test_the_control_channel_provides_what_rooms_send_through(server):
    from twisted.internet.interfaces import IPushProducer
    from zope.interface.verify import verifyObject

    from gamesession.server.registry import IControlChannel

    control = server.players[0].session.control
    assert verifyObject(IControlChannel, control) and IPushProducer.providedBy(control)
