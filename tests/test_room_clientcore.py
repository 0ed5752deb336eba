"""The client's room operations in the sans-I/O ClientCore, against the real login server.

The server's side of each exchange is played by hand through the Harness's
real LoginProtocol (its sealed channel), so these tests pin what the client
sends and how it reads every room event, whatever the server's room logic.
"""

import pytest

from fakes import Harness
from gamesession.protocol import rooms, wire
from gamesession.protocol.clientcore import (
    MAX_ROOM_DATAGRAM, MAX_ROOM_MESSAGE, NotInRoom, PayloadTooLarge, RoomDatagram, RoomError,
    RoomJoined, RoomLeft, RoomList, RoomPresence)
from gamesession.protocol.datagram import Kind, split_header
from gamesession.protocol.wire import ProtocolError

ROOM = bytes.fromhex("0123456789abcdef")
OTHER = bytes.fromhex("fedcba9876543210")


@pytest.fixture
def pair():
    harness = Harness()
    connection, session = harness.logged_in("alice")
    return harness, connection, session


def server_reads(connection, frame):
    """The inner message of a frame the client would send, opened as the server opens it."""
    envelope = wire.decode(frame)
    return wire.decode(connection.protocol.receiver.open(wire.unseal_envelope(envelope)))


def server_says(connection, *messages):
    """Send room frames from the server's side; returns the client's events."""
    for message in messages:
        connection.protocol.send_message(message)
    return connection.pump()


def join(connection, room=ROOM, members=((1, "alice"),), rid=1, **more):
    infos = [rooms.MemberInfo(m, u) for m, u in members]
    return server_says(connection, *rooms.joined(
        rid, room, more.get("room_type", "dm"), more.get("member", 1), {"map": "q2dm1"}, 8, True,
        more.get("created", True), infos))


def test_each_request_carries_a_new_rid_and_says_what_the_codec_parses(pair):
    _, connection, _ = pair
    core = connection.core
    sent = [
        core.create_room("dm", {"map": "q2dm1"}, 4, listed=False),
        core.join_room(ROOM.hex()),
        core.join_or_create("dm", max_members=2),
        core.leave_room(ROOM),
        core.list_rooms("dm"),
    ]
    assert [rid for rid, _ in sent] == [1, 2, 3, 4, 5]
    parsed = [rooms.parse_request(server_reads(connection, frame)) for _, frame in sent]
    assert parsed == [
        rooms.CreateRoom(1, "dm", {"map": "q2dm1"}, 4, False),
        rooms.JoinRoom(2, ROOM),
        rooms.JoinOrCreateRoom(3, "dm", {}, 2),
        rooms.LeaveRoom(4, ROOM),
        rooms.ListRooms(5, "dm"),
    ]


def test_bad_arguments_raise_before_anything_is_sealed(pair):
    _, connection, _ = pair
    core = connection.core
    for call in (lambda: core.create_room("no spaces"), lambda: core.create_room("x" * 33),
                 lambda: core.create_room("dm", label=["not", "an", "object"]),
                 lambda: core.create_room("dm", max_members=0),
                 lambda: core.join_room("not-hex"), lambda: core.list_rooms("")):
        with pytest.raises(ValueError):
            call()
    assert core.sender.counter == 1  # only the login was sealed


def test_joined_presence_and_left_keep_the_member_table(pair):
    _, connection, _ = pair
    core = connection.core
    [joined] = join(connection, members=((1, "bob"), (2, "alice")), member=2, created=False)
    assert isinstance(joined, RoomJoined) and joined.member == 2 and not joined.created
    assert core.rooms[ROOM].members == {1: "bob", 2: "alice"}
    [event] = server_says(connection, rooms.presence(ROOM, "join", 3, "carol"))
    assert event == RoomPresence(ROOM, "join", 3, "carol", None)
    assert core.rooms[ROOM].members == {1: "bob", 2: "alice", 3: "carol"}
    [event] = server_says(connection, rooms.presence(ROOM, "leave", 1, "bob", "timeout"))
    assert event.reason == "timeout" and core.rooms[ROOM].members == {2: "alice", 3: "carol"}
    [event] = server_says(connection, rooms.label_changed(ROOM, {"round": 2}))
    assert core.rooms[ROOM].label == {"round": 2}
    [event] = server_says(connection, rooms.left(ROOM, "kicked"))
    assert event == RoomLeft(ROOM, "kicked", None) and ROOM not in core.rooms


def test_a_long_member_list_arrives_as_one_room_joined(pair):
    _, connection, _ = pair
    members = [(n, "player-with-a-long-name-{:04d}".format(n)) for n in range(1, 400)]
    events = join(connection, members=members, member=399)
    assert [type(e) for e in events] == [RoomJoined]  # room_members frames were folded in
    assert len(events[0].members) == 399 and not events[0].more
    assert len(connection.core.rooms[ROOM].members) == 399


def test_list_and_error_answers_carry_their_rid(pair):
    _, connection, _ = pair
    info = rooms.RoomInfo(ROOM, "dm", {"map": "x"}, 3, 8)
    [listing] = server_says(connection, rooms.rooms(7, [info]))
    assert listing == RoomList(7, (info,), False)
    [error] = server_says(connection, rooms.error(wire.ErrorCode.ROOM_FULL, "room full", 8))
    assert error == RoomError(461, "room full", 8)
    assert connection.core.receiver is not None  # a refusal is not fatal


def test_a_malformed_room_event_is_a_protocol_error(pair):
    _, connection, _ = pair
    connection.protocol.send_message({"type": "room_presence", "room": ROOM.hex(),
                                      "event": "dance", "member": 1, "user": "x"})
    with pytest.raises(ProtocolError):
        connection.pump()


def test_room_message_over_the_limit_is_refused_before_sending(pair):
    _, connection, _ = pair
    core = connection.core
    join(connection, members=((1, "alice"), (2, "bob")))
    counter = core.sender.counter
    with pytest.raises(PayloadTooLarge, match="4097 bytes is over the 4096-byte limit"):
        core.room_message(ROOM, b"x" * (MAX_ROOM_MESSAGE + 1))
    assert core.sender.counter == counter  # nothing sealed: the session is not at risk
    frame = core.room_message(ROOM.hex(), b"x" * MAX_ROOM_MESSAGE, to=2)
    assert rooms.parse_request(server_reads(connection, frame)) == rooms.SendToRoom(
        ROOM, b"x" * MAX_ROOM_MESSAGE, (2,))


def test_sends_to_a_room_not_joined_raise_not_in_room(pair):
    _, connection, _ = pair
    with pytest.raises(NotInRoom, match="not in room fedcba9876543210"):
        connection.core.room_message(OTHER, b"hi")
    with pytest.raises(NotInRoom):
        connection.core.room_datagram(OTHER, b"hi")


def test_room_datagram_is_a_sealed_room_send_the_server_opens(pair):
    _, connection, session = pair
    core = connection.core
    join(connection, members=((1, "alice"), (2, "bob"), (3, "carol")))
    packet = core.room_datagram(ROOM, b"pos 3 4", to=[3, 2])
    token, counter, box = split_header(packet)
    kind, payload, _ = session.channel.open(counter, box)
    assert kind == Kind.ROOM_SEND
    assert rooms.unpack_room_send(payload) == (ROOM, (3, 2), b"pos 3 4")
    with pytest.raises(PayloadTooLarge):
        core.room_datagram(ROOM, bytes(MAX_ROOM_DATAGRAM + 1))


def test_a_relayed_datagram_becomes_a_room_datagram_only_for_a_joined_room(pair):
    harness, connection, session = pair
    core = connection.core
    join(connection, members=((1, "alice"), (2, "bob")))
    session.address = ("198.51.100.7", 40000)
    session.send(Kind.ROOM_RELAY, rooms.pack_room_relay(ROOM, 2, b"hello"))
    session.send(Kind.ROOM_RELAY, rooms.pack_room_relay(OTHER, 2, b"elsewhere"))
    session.send(Kind.ROOM_RELAY, b"short")
    events = []
    for packet, _ in harness.udp_sent():
        kind, payload = core.datagram_received(packet)
        assert kind == Kind.ROOM_RELAY
        events.append(core.room_relay(payload))
    assert events == [RoomDatagram(ROOM, 2, b"hello"), None, None]
    assert core.unknown_room_datagrams == 2


# -- edges the mutation run found unpinned (docs/testing.md) ----------------------------------

def test_requests_carry_their_defaults_labels_and_options(pair):
    _, connection, _ = pair
    core = connection.core
    sent = [
        core.create_room("dm"),
        core.create_room("dm", options={"team": "red"}),
        core.join_room(ROOM, options={"team": "blue"}),
        core.join_or_create("dm", {"map": "q2dm1"}, options={"team": "red"}),
    ]
    parsed = [rooms.parse_request(server_reads(connection, frame)) for _, frame in sent]
    assert parsed == [
        rooms.CreateRoom(1, "dm", {}, None, True),  # listed by default
        rooms.CreateRoom(2, "dm", {}, None, True, {"team": "red"}),
        rooms.JoinRoom(3, ROOM, {"team": "blue"}),
        rooms.JoinOrCreateRoom(4, "dm", {"map": "q2dm1"}, None, {"team": "red"}),
    ]


@pytest.mark.parametrize("call, message", [
    (lambda core: core.create_room("no spaces"),
     "a room type is 1-32 characters of A-Z a-z 0-9 _ . -, not 'no spaces'"),
    (lambda core: core.create_room("dm", label=[1]), "a room label is a JSON object (a dict), not [1]"),
    (lambda core: core.join_or_create("dm", label=[1]),
     "a room label is a JSON object (a dict), not [1]"),
    (lambda core: core.create_room("dm", options=[2]),
     "a room options is a JSON object (a dict), not [2]"),
    (lambda core: core.join_room(ROOM, options=[3]), "a room options is a JSON object (a dict), not [3]"),
    (lambda core: core.join_or_create("dm", options=[4]),
     "a room options is a JSON object (a dict), not [4]"),
    (lambda core: core.create_room("dm", max_members=0), "max_members must be a positive integer, not 0"),
    (lambda core: core.join_or_create("dm", max_members=True),
     "max_members must be a positive integer, not True"),
])
def test_bad_arguments_say_which_and_what(pair, call, message):
    _, connection, _ = pair
    with pytest.raises(ValueError) as info:
        call(connection.core)
    assert str(info.value) == message
    assert connection.core.sender.counter == 1  # nothing sealed after the login


def test_a_one_seat_room_is_a_valid_request(pair):
    _, connection, _ = pair
    _, frame = connection.core.create_room("solo", max_members=1)
    assert rooms.parse_request(server_reads(connection, frame)).max_members == 1


def test_the_room_state_copies_the_joined_room(pair):
    _, connection, _ = pair
    join(connection, room_type="ctf", member=1)
    state = connection.core.rooms[ROOM]
    assert (state.room, state.room_type, state.member, state.label, state.max_members,
            state.listed) == (ROOM, "ctf", 1, {"map": "q2dm1"}, 8, True)


def test_room_payload_limits_are_inclusive_and_say_so(pair):
    _, connection, _ = pair
    core = connection.core
    join(connection, members=((1, "alice"), (2, "bob")))
    core.room_datagram(ROOM, bytes(MAX_ROOM_DATAGRAM))
    with pytest.raises(PayloadTooLarge) as info:
        core.room_datagram(ROOM, bytes(MAX_ROOM_DATAGRAM + 1))
    assert str(info.value) == "room datagram of {} bytes is over the {}-byte limit (MAX_ROOM_DATAGRAM)" \
        .format(MAX_ROOM_DATAGRAM + 1, MAX_ROOM_DATAGRAM)
    with pytest.raises(PayloadTooLarge) as info:
        core.room_message(ROOM, bytes(MAX_ROOM_MESSAGE + 1))
    assert str(info.value) == "room message of {} bytes is over the {}-byte limit (MAX_ROOM_MESSAGE)" \
        .format(MAX_ROOM_MESSAGE + 1, MAX_ROOM_MESSAGE)
    with pytest.raises(NotInRoom) as info:
        core.room_message(OTHER, b"hi")
    assert str(info.value) == "not in room fedcba9876543210"
    assert str(NotInRoom()) == "not in that room"


def test_room_members_without_a_room_joined_is_a_protocol_error(pair):
    _, connection, _ = pair
    connection.protocol.send_message({"type": "room_members", "room": ROOM.hex(),
                                      "members": [{"member": 2, "user": "bob"}]})
    with pytest.raises(ProtocolError) as info:
        connection.pump()
    assert (info.value.code, info.value.reason) == (
        wire.ErrorCode.UNEXPECTED, "room_members without room_joined")


def test_a_room_left_during_a_member_list_drops_the_half_join(pair):
    _, connection, _ = pair
    members = [rooms.MemberInfo(n, "player-with-a-long-name-{:04d}".format(n)) for n in range(1, 400)]
    first, *rest = rooms.joined(1, ROOM, "dm", 1, {}, 400, True, True, members)
    assert rest and first.get("more")
    assert server_says(connection, first) == []  # the member list continues
    [left] = server_says(connection, rooms.left(ROOM, "closed"))
    assert left == RoomLeft(ROOM, "closed", None)
    connection.protocol.send_message(rest[0])
    with pytest.raises(ProtocolError, match="room_members without room_joined"):
        connection.pump()
    assert ROOM not in connection.core.rooms


def test_events_about_unknown_rooms_and_members_are_harmless(pair):
    _, connection, _ = pair
    core = connection.core
    join(connection, members=((1, "alice"),))
    assert server_says(connection, rooms.left(OTHER, "kicked")) == [RoomLeft(OTHER, "kicked", None)]
    [event] = server_says(connection, rooms.presence(ROOM, "leave", 9, "ghost"))
    assert event.member == 9 and core.rooms[ROOM].members == {1: "alice"}
