"""Rooms across nodes, on the in-memory directory: two Harness nodes in one process.

Each node is a ``fakes.Harness`` with a ``ClusterNode`` (admission), a
``ClusterRooms`` on its RoomManager and a ``TicketChecker`` on its portal,
as ``twistd gamesession --cluster`` wires them; all share one clock and one
``OutageDirectory``.  Against Redis and real twistd nodes: tests/test_cluster.py.
"""

import pytest

from fakes import Harness
from test_cluster_node import TTL, OutageDirectory
from gamesession.cluster import options as clustertap
from gamesession.cluster.directory import NodeRecord
from gamesession.cluster.node import ClusterNode
from gamesession.cluster.rooms import ClusterRooms
from gamesession.protocol import rooms as codec
from gamesession.protocol import transfer, wire
from gamesession.protocol.clientcore import LoginFailed, SessionEnded, Welcome
from gamesession.protocol.datagram import Kind
from gamesession.protocol.wire import ErrorCode

from twisted.internet import task

Joined, Redirect = codec.RoomJoined, transfer.RoomRedirect


class Nodes:
    def __init__(self, names=("a", "b"), duplicate_login="kick", **registry_options):
        self.clock = task.Clock()
        self.directory = OutageDirectory(self.clock)
        self.harness, self.node, self.rooms = {}, {}, {}
        for index, name in enumerate(names):
            harness = Harness(clock=self.clock, duplicate_login=duplicate_login,
                              **registry_options)
            node = ClusterNode(self.directory,
                               NodeRecord("node-" + name, "127.0.0.{}".format(index + 1),
                                          7000 + 10 * index, 7001 + 10 * index),
                               harness.registry, self.clock, ttl=TTL,
                               duplicate_login=duplicate_login)
            harness.registry.admission = node
            self.rooms[name] = ClusterRooms(node, harness.registry.rooms)
            clustertap.accept_tickets(node, harness.factory.portal)
            node.startService()
            self.harness[name], self.node[name] = harness, node
        self.rid = 0

    def advance(self, seconds, step=0.25):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def login(self, name, user):
        connection, session = self.harness[name].logged_in(user)
        return connection

    def ask(self, connection, build, *args, **kw):
        self.rid += 1
        connection.request(build(self.rid, *args, **kw))
        return connection.room_events()

    def create(self, connection, room_type="duel", **kw):
        [joined] = self.ask(connection, codec.create, room_type, **kw)
        assert isinstance(joined, Joined), joined
        return joined

    def listed(self, room_type="duel"):
        return self.directory.list_rooms(room_type).result

    def follow(self, name, redirect, core):
        """Log in to node ``name`` with the redirect's ticket: (connection, its events)."""
        connection = self.harness[name].connect()
        connection.core = core.follow(redirect)
        connection.send(connection.core.hello())
        [challenge] = connection.received()
        [login], _ = connection.core.frame_received(challenge)
        connection.send(login)
        return connection, connection.pump()


@pytest.fixture
def nodes():
    return Nodes()


def test_a_nodes_rooms_are_in_the_directory_and_kept_up_to_date(nodes):
    alice, bob = nodes.login("a", "alice"), nodes.login("a", "bob")
    joined = nodes.create(alice, label={"map": "x"}, max_members=4)
    [record] = nodes.listed()
    assert (record.room_id, record.type, record.node, record.label, record.seats,
            record.occupied, record.listed) == (joined.room.hex(), "duel", "node-a",
                                                '{"map":"x"}', 4, 1, True)
    nodes.ask(bob, codec.join, joined.room)
    assert nodes.listed()[0].occupied == 2
    nodes.harness["a"].registry.rooms.find(joined.room).set_label({"map": "y"})
    assert nodes.listed()[0].label == '{"map":"y"}'
    nodes.ask(bob, codec.leave, joined.room)
    assert nodes.listed()[0].occupied == 1
    nodes.ask(alice, codec.leave, joined.room)  # empty: closed
    assert nodes.listed() == [] and nodes.directory.rooms == {}
    private = nodes.create(alice, listed=False)
    assert nodes.listed() == []
    assert nodes.directory.rooms[private.room.hex()].listed is False


def test_room_list_shows_the_rooms_of_every_node_fullest_first(nodes):
    alice, bob, carol = (nodes.login("a", "alice"), nodes.login("a", "bob"),
                         nodes.login("b", "carol"))
    two = nodes.create(alice)
    nodes.ask(bob, codec.join, two.room)
    one = nodes.create(carol)
    [answer] = nodes.ask(carol, codec.list_rooms, "duel")
    assert [(i.room, i.members) for i in answer.rooms] == [(two.room, 2), (one.room, 1)]
    alice.room_events()
    [answer] = nodes.ask(alice, codec.list_rooms, "duel")
    assert [i.room for i in answer.rooms] == [two.room, one.room]


def test_room_list_reads_the_directory_at_most_once_a_second_per_type(nodes):
    carol = nodes.login("b", "carol")
    for _ in range(5):
        nodes.ask(carol, codec.list_rooms, "duel")
    assert nodes.node["b"].timings["list_rooms"].count == 1
    alice = nodes.login("a", "alice")
    room = nodes.create(alice)
    [answer] = nodes.ask(carol, codec.list_rooms, "duel")
    assert answer.rooms == ()  # cached
    nodes.advance(1.0)
    [answer] = nodes.ask(carol, codec.list_rooms, "duel")
    assert [i.room for i in answer.rooms] == [room.room]


def test_join_of_a_room_on_another_node_redirects_with_a_ticket_and_moves_the_session(nodes):
    alice = nodes.login("a", "alice")
    room = nodes.create(alice, max_members=2)
    carol = nodes.login("b", "carol")
    old_session = nodes.harness["b"].registry.by_user["carol"]
    [redirect] = nodes.ask(carol, codec.join, room.room)
    assert isinstance(redirect, Redirect)
    assert (redirect.rid, redirect.room, redirect.host, redirect.port, redirect.udp_port) == (
        nodes.rid, room.room, "127.0.0.1", 7000, 7001)
    assert 0 < redirect.expires <= 10 and transfer.valid_ticket(redirect.ticket)
    assert nodes.harness["b"].stats.rooms.joins["redirected"] == 1
    # the seat is held: the room (2 seats, 1 taken, 1 reserved) is full for others
    refused = []
    nodes.directory.reserve_seat(room.room.hex(), "dave", 5.0).addErrback(refused.append)
    assert refused[0].value.reason == "room_full"
    moved, events = nodes.follow("a", redirect, carol.core)
    assert isinstance(events[0], Welcome) and events[0].user == "carol"
    [joined] = [e for e in events if isinstance(e, Joined)]
    assert (joined.rid, joined.room, joined.member) == (redirect.rid, room.room, 2)
    assert [m.user for m in joined.members] == ["alice", "carol"]
    # the first node ended its session: moved
    assert old_session.ended == "moved"
    assert carol.pump() == [SessionEnded("moved")]
    assert nodes.node["b"].moved == 1
    assert nodes.directory.user_node("carol").result.node == "node-a"
    [presence] = alice.room_events()
    assert (presence.event, presence.user) == ("join", "carol")
    assert nodes.listed()[0].occupied == 2
    # and the two are in one room: a datagram from carol reaches alice
    harness = nodes.harness["a"]
    harness.registry.datagram_received(alice.core.datagram(Kind.KEEPALIVE), ("198.51.100.1", 5000))
    harness.registry.datagram_received(
        moved.core.room_datagram(room.room, b"hi"), ("198.51.100.2", 5001))
    [(packet, address)] = harness.udp_sent()[-1:]
    kind, payload = alice.core.datagram_received(packet)
    assert kind == Kind.ROOM_RELAY and codec.unpack_room_relay(payload).data == b"hi"


def test_join_or_create_takes_a_seat_on_another_node_before_it_creates(nodes):
    alice = nodes.login("a", "alice")
    room = nodes.create(alice, max_members=2)
    carol = nodes.login("b", "carol")
    [redirect] = nodes.ask(carol, codec.join_or_create, "duel")
    assert isinstance(redirect, Redirect) and redirect.room == room.room
    moved, events = nodes.follow("a", redirect, carol.core)
    assert [e.room for e in events if isinstance(e, Joined)] == [room.room]
    # now full: a third player on b gets a room of its own on b
    dave = nodes.login("b", "dave")
    [created] = nodes.ask(dave, codec.join_or_create, "duel")
    assert isinstance(created, Joined) and created.created
    assert nodes.directory.rooms[created.room.hex()].node == "node-b"


def test_join_or_create_prefers_a_room_of_its_own_node(nodes):
    alice, bob = nodes.login("a", "alice"), nodes.login("a", "bob")
    far = nodes.create(alice)
    nodes.ask(bob, codec.join, far.room)
    carol, dave = nodes.login("b", "carol"), nodes.login("b", "dave")
    near = nodes.create(carol)
    [joined] = nodes.ask(dave, codec.join_or_create, "duel")
    assert isinstance(joined, Joined) and joined.room == near.room
    assert "list_rooms" not in nodes.node["b"].timings  # no round trip


@pytest.mark.parametrize("how", ["reused", "expired", "forged", "other-node"])
def test_a_bad_ticket_is_refused_with_419(nodes, how):
    alice = nodes.login("a", "alice")
    room = nodes.create(alice)
    carol = nodes.login("b", "carol")
    [redirect] = nodes.ask(carol, codec.join, room.room)
    where = "a"
    if how == "reused":
        nodes.follow("a", redirect, carol.core)
    elif how == "expired":
        nodes.advance(10.5)
    elif how == "forged":
        redirect = transfer.RoomRedirect(redirect.rid, redirect.room, redirect.host, redirect.port,
                                         redirect.udp_port, "A" * 22, redirect.expires)
    else:
        where = "b"
    with pytest.raises(LoginFailed) as refused:
        nodes.follow(where, redirect, carol.core)
    assert refused.value.code == ErrorCode.BAD_TICKET == 419
    assert "ticket" in refused.value.reason
    assert nodes.harness[where].stats.logins["bad_ticket"] == 1


def test_a_server_outside_a_cluster_refuses_ticket_logins():
    connection = Harness().connect()
    with pytest.raises(LoginFailed) as refused:
        ticket_login(connection, transfer.ticket_login("B" * 22))
    assert refused.value.code == 419 and "not in a cluster" in refused.value.reason


def ticket_login(connection, message):
    """Send ``message`` as the sealed login of a fresh handshake; the client's events."""
    from gamesession.protocol.clientcore import ClientCore
    from fakes import SERVER_KEY

    connection.core = core = ClientCore(bytes(SERVER_KEY.public_key), "carol", None,
                                        ticket_login=message)
    connection.send(core.hello())
    [challenge] = connection.received()
    [login], _ = core.frame_received(challenge)
    connection.send(login)
    return connection.pump()


def test_a_malformed_ticket_login_is_422(nodes):
    connection = nodes.harness["a"].connect()
    with pytest.raises(LoginFailed) as refused:
        ticket_login(connection, {"type": "ticket_login", "ticket": "short"})
    assert refused.value.code == 422 and connection.closed


def test_a_dead_nodes_rooms_leave_the_listings_and_cannot_be_joined(nodes):
    alice = nodes.login("a", "alice")
    room = nodes.create(alice)
    carol = nodes.login("b", "carol")
    dead = nodes.node["a"]
    dead._stopping = True  # kill -9: no more heartbeats
    dead._call.cancel()
    nodes.advance(TTL + 0.5)
    [answer] = nodes.ask(carol, codec.list_rooms, "duel")
    assert answer.rooms == ()
    [refused] = nodes.ask(carol, codec.join, room.room)
    assert (refused.code, refused.rid) == (ErrorCode.ROOM_NOT_FOUND, nodes.rid)


def test_join_of_an_unknown_room_is_460(nodes):
    carol = nodes.login("b", "carol")
    [refused] = nodes.ask(carol, codec.join, b"\x01" * 8)
    assert refused.code == ErrorCode.ROOM_NOT_FOUND


def test_directory_down_list_is_local_join_elsewhere_is_503_join_or_create_creates_here(nodes):
    alice, carol = nodes.login("a", "alice"), nodes.login("b", "carol")
    far = nodes.create(alice)
    nodes.directory.down = True
    nodes.advance(1.5)
    assert not nodes.node["b"].up
    mine = nodes.create(carol)
    [answer] = nodes.ask(carol, codec.list_rooms, "duel")
    assert [i.room for i in answer.rooms] == [mine.room]
    [refused] = nodes.ask(carol, codec.join, far.room)
    assert refused.code == 503 and "cluster directory unavailable" in refused.reason
    # back (emptied, as by a Redis restart): b re-registers its room
    nodes.directory.restart_empty()
    nodes.directory.down = False
    nodes.advance(1.5)
    assert {r.room_id for r in nodes.listed()} == {far.room.hex(), mine.room.hex()}


def test_a_session_has_a_bounded_number_of_cross_node_requests_in_flight(nodes):
    from twisted.internet import defer

    carol = nodes.login("b", "carol")
    held = []
    nodes.directory.reserve_seat = lambda *args: held.append(args) or defer.Deferred()
    answers = []
    for _ in range(6):
        answers += nodes.ask(carol, codec.join, b"\x02" * 8)
    assert len(held) == 4
    assert [a.code for a in answers] == [503, 503]
    assert nodes.harness["b"].stats.rooms.limited["cluster_pending"] == 2


def test_shutdown_deregisters_without_removing_rooms_one_by_one(nodes):
    alice = nodes.login("a", "alice")
    nodes.create(alice)
    nodes.node["a"].stopService()
    nodes.harness["a"].registry.shutdown()
    assert "remove_room" not in nodes.node["a"].timings
    assert nodes.listed() == []


def test_a_move_is_granted_under_duplicate_login_reject():
    nodes = Nodes(duplicate_login="reject")
    alice = nodes.login("a", "alice")
    room = nodes.create(alice)
    carol = nodes.login("b", "carol")
    [redirect] = nodes.ask(carol, codec.join, room.room)
    _, events = nodes.follow("a", redirect, carol.core)
    assert [e.room for e in events if isinstance(e, Joined)] == [room.room]
    assert carol.pump() == [SessionEnded("moved")]
    # and a plain second login of carol is still refused anywhere
    with pytest.raises(LoginFailed) as refused:
        nodes.harness["b"].connect().login("carol")
    assert refused.value.code == ErrorCode.ALREADY_LOGGED_IN


def test_a_full_node_refuses_a_ticket_login_without_spending_the_ticket():
    nodes = Nodes(max_sessions=1)
    alice = nodes.login("a", "alice")
    room = nodes.create(alice, max_members=4)
    carol = nodes.login("b", "carol")
    [redirect] = nodes.ask(carol, codec.join, room.room)
    with pytest.raises(LoginFailed) as refused:
        nodes.follow("a", redirect, carol.core)
    assert refused.value.code == ErrorCode.SERVER_FULL
    assert nodes.harness["b"].registry.by_user["carol"].ended is None  # still on b
    assert redirect.ticket in nodes.directory.tickets  # not spent


@pytest.mark.parametrize("options", [{"team": "red"}, None])
def test_the_join_options_reach_the_hosting_nodes_handler(nodes, options):
    from gamesession.server.roomhandler import RelayRoom

    class RedOnly(RelayRoom):
        def join_attempt(self, room, session, options):
            return None if options.get("team") == "red" or session.user == "alice" else "red only"

    nodes.harness["a"].registry.rooms.handlers["duel"] = RedOnly
    alice = nodes.login("a", "alice")
    room = nodes.create(alice)
    carol = nodes.login("b", "carol")
    [redirect] = nodes.ask(carol, codec.join, room.room, options=options)
    connection = nodes.harness["a"].connect()
    connection.core = carol.core.follow(redirect, options)
    connection.send(connection.core.hello())
    [challenge] = connection.received()
    [login], _ = connection.core.frame_received(challenge)
    connection.send(login)
    [welcome, answer] = connection.pump()
    assert isinstance(welcome, Welcome)
    if options:
        assert isinstance(answer, Joined) and answer.rid == redirect.rid
    else:
        assert isinstance(answer, codec.RoomError)
        assert (answer.code, answer.rid, answer.reason) == (ErrorCode.ROOM_REFUSED, redirect.rid,
                                                            "red only")


def test_a_seat_reserved_for_a_transfer_is_not_taken_by_a_local_join(nodes):
    alice, bob = nodes.login("a", "alice"), nodes.login("a", "bob")
    room = nodes.create(alice, max_members=2)
    carol = nodes.login("b", "carol")
    [redirect] = nodes.ask(carol, codec.join, room.room)
    assert nodes.rooms["a"].held(nodes.harness["a"].registry.rooms.find(room.room)) == 1
    [refused] = nodes.ask(bob, codec.join, room.room)
    assert refused.code == ErrorCode.ROOM_FULL
    [created] = nodes.ask(bob, codec.join_or_create, "duel")  # the held seat is not offered
    assert isinstance(created, Joined) and created.created and created.room != room.room
    _, events = nodes.follow("a", redirect, carol.core)
    assert [e.room for e in events if isinstance(e, Joined)] == [room.room]
    assert nodes.rooms["a"].holds == {}


def test_a_held_seat_is_free_again_when_its_ticket_expires(nodes):
    alice, bob = nodes.login("a", "alice"), nodes.login("a", "bob")
    room = nodes.create(alice, max_members=2)
    carol = nodes.login("b", "carol")
    nodes.ask(carol, codec.join, room.room)
    nodes.advance(10.5)
    [joined] = [e for e in nodes.ask(bob, codec.join, room.room) if isinstance(e, Joined)]
    assert joined.room == room.room


def test_a_followed_core_keeps_the_credentials_the_request_ids_and_the_given_key(nodes):
    from nacl.public import PrivateKey

    from gamesession.protocol.datagram import Drop

    alice = nodes.login("a", "alice")
    room = nodes.create(alice)
    carol = nodes.login("b", "carol")
    [redirect] = nodes.ask(carol, codec.join, room.room)
    for _ in range(3):  # carol's core has made three requests (rids 1-3)
        carol.core.list_rooms("duel")
    key = PrivateKey.generate()
    core = carol.core.follow(redirect, ephemeral=key)
    # Its handshake uses the given ephemeral key; no datagram is its session's yet.
    assert wire.decode(core.hello())["client_key"] == wire.b64(bytes(key.public_key))
    with pytest.raises(Drop) as dropped:
        core.datagram_received(bytes(48))
    assert dropped.value.reason == "unknown_token"
    connection = nodes.harness["a"].connect()
    connection.core = core
    connection.send(core.hello())
    [challenge] = connection.received()
    [login], _ = core.frame_received(challenge)
    connection.send(login)
    assert [type(e) for e in connection.pump()][:2] == [Welcome, Joined]
    # Request ids go on from the first node's.
    rid, _ = core.list_rooms("duel")
    assert rid == 4
    # The ticket was for one login: a later connection logs in with carol's credentials.
    connection.lose()
    again = nodes.harness["a"].connect()
    events = again.resume(core, resume_session=False)
    assert isinstance(events[0], Welcome) and events[0].user == "carol"
