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
