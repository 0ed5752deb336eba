"""The sans-I/O room codec (gamesession/protocol/rooms.py): frames both ways, datagram payloads."""

import json

import pytest

from gamesession.protocol import rooms, wire
from gamesession.protocol.datagram import MAX_PAYLOAD, Drop, Kind
from gamesession.protocol.wire import ErrorCode, ProtocolError

ROOM = bytes.fromhex("9f1c2e3d4c5b6a70")


def roundtrip(message):
    """As the peer sees it: through the canonical encoding and back."""
    return wire.decode(wire.encode(message))


def test_new_kinds_and_codes_have_their_documented_numbers():
    assert (Kind.ROOM_SEND, Kind.ROOM_RELAY) == (6, 7)
    assert [int(c) for c in (ErrorCode.ROOM_NOT_FOUND, ErrorCode.ROOM_FULL, ErrorCode.ROOM_REFUSED,
                             ErrorCode.TOO_MANY_ROOMS, ErrorCode.ROOMS_EXHAUSTED,
                             ErrorCode.BAD_LABEL, ErrorCode.NOT_IN_ROOM,
                             ErrorCode.ALREADY_IN_ROOM, ErrorCode.BAD_ROOM_TYPE)] == list(range(460, 469))


def test_room_ids_in_json_are_lowercase_hex():
    assert rooms.room_hex(ROOM) == "9f1c2e3d4c5b6a70"
    assert rooms.room_bytes("9F1C2E3D4C5B6A70") == ROOM
    assert rooms.room_bytes(ROOM) == ROOM
    for bad in ("9f1c", "zz" * 8, b"short", 7):
        with pytest.raises(ValueError):
            rooms.room_bytes(bad)


@pytest.mark.parametrize("message, parsed", [
    (rooms.create(1, "deathmatch"), rooms.CreateRoom(1, "deathmatch", {}, None, True)),
    (rooms.create(2, "dm", {"map": "q2dm1"}, 8, listed=False),
     rooms.CreateRoom(2, "dm", {"map": "q2dm1"}, 8, False)),
    (rooms.join(3, ROOM), rooms.JoinRoom(3, ROOM)),
    (rooms.join_or_create(4, "dm", {"mode": "ffa"}, 4),
     rooms.JoinOrCreateRoom(4, "dm", {"mode": "ffa"}, 4)),
    (rooms.leave(5, ROOM), rooms.LeaveRoom(5, ROOM)),
    (rooms.list_rooms(6, "dm"), rooms.ListRooms(6, "dm")),
    (rooms.send(ROOM, b"hi"), rooms.SendToRoom(ROOM, b"hi", ())),
    (rooms.send(ROOM, b"hi", to=[3, 2, 3]), rooms.SendToRoom(ROOM, b"hi", (3, 2))),
])
def test_every_request_parses_back_to_what_was_built(message, parsed):
    assert rooms.parse_request(roundtrip(message)) == parsed


@pytest.mark.parametrize("message", [
    {"type": "room_join", "room": "9f1c2e3d4c5b6a70"},  # no rid
    {"type": "room_join", "rid": -1, "room": "9f1c2e3d4c5b6a70"},
    {"type": "room_join", "rid": 2 ** 31, "room": "9f1c2e3d4c5b6a70"},
    {"type": "room_join", "rid": True, "room": "9f1c2e3d4c5b6a70"},
    {"type": "room_join", "rid": 1, "room": 5},
    {"type": "room_create", "rid": 1, "room_type": 5},
    {"type": "room_create", "rid": 1, "room_type": "dm", "max_members": 0},
    {"type": "room_create", "rid": 1, "room_type": "dm", "max_members": "8"},
    {"type": "room_create", "rid": 1, "room_type": "dm", "listed": "yes"},
    {"type": "room_send", "room": "9f1c2e3d4c5b6a70"},
    {"type": "room_send", "room": "9f1c2e3d4c5b6a70", "data": "not base64!"},
    {"type": "room_send", "room": "9f1c2e3d4c5b6a70", "data": wire.b64(bytes(4097))},
    {"type": "room_send", "room": "9f1c2e3d4c5b6a70", "data": "", "to": 3},
    {"type": "room_send", "room": "9f1c2e3d4c5b6a70", "data": "", "to": ["3"]},
    {"type": "room_send", "room": "9f1c2e3d4c5b6a70", "data": "", "to": list(range(256))},
    {"type": "room_teleport", "rid": 1},
])
def test_malformed_requests_are_fatal_protocol_errors(message):
    with pytest.raises(ProtocolError) as caught:
        rooms.parse_request(message)
    assert caught.value.code in (ErrorCode.BAD_FIELD, ErrorCode.UNKNOWN_TYPE)


@pytest.mark.parametrize("message, code", [
    ({"type": "room_create", "rid": 7, "room_type": ""}, ErrorCode.BAD_ROOM_TYPE),
    ({"type": "room_create", "rid": 7, "room_type": "x" * 33}, ErrorCode.BAD_ROOM_TYPE),
    ({"type": "room_list", "rid": 7, "room_type": "no spaces"}, ErrorCode.BAD_ROOM_TYPE),
    ({"type": "room_create", "rid": 7, "room_type": "dm", "label": [1]}, ErrorCode.BAD_LABEL),
    ({"type": "room_create", "rid": 7, "room_type": "dm", "label": {"k": "v" * 600}},
     ErrorCode.BAD_LABEL),
    ({"type": "room_join_or_create", "rid": 7, "room_type": "dm", "label": "x"},
     ErrorCode.BAD_LABEL),
    ({"type": "room_join", "rid": 7, "room": "not-a-room-id"}, ErrorCode.ROOM_NOT_FOUND),
    ({"type": "room_leave", "rid": 7, "room": "9F1C2E3D4C5B6A70"}, ErrorCode.NOT_IN_ROOM),
])
def test_refusable_requests_are_refusals_that_echo_the_rid(message, code):
    with pytest.raises(rooms.RoomRefused) as caught:
        rooms.parse_request(message)
    assert caught.value.code == code and caught.value.rid == 7
    answer = caught.value.message()
    assert answer["type"] == "room_error" and answer["code"] == int(code) and answer["rid"] == 7


def test_label_size_is_measured_as_sent_and_bounded_by_the_option():
    label = {"name": "é" * 10}  # each é is sent as \u00e9: 6 bytes
    assert rooms.label_size(label) == len('{"name":""}') + 60
    assert rooms.check_label(label, 71) == label
    with pytest.raises(rooms.RoomRefused):
        rooms.check_label(label, 70)


def test_send_refuses_what_the_server_would_close_the_session_for():
    with pytest.raises(ValueError):
        rooms.send(ROOM, bytes(rooms.MAX_ROOM_MESSAGE + 1))
    with pytest.raises(ValueError):
        rooms.send(ROOM, b"x", to=list(range(1, 300)))
    with pytest.raises(ValueError):
        rooms.send(ROOM, bytes(4096), to=[2 ** 32 - 1] * 1 + list(range(10 ** 9, 10 ** 9 + 200)))
    rooms.send(ROOM, bytes(rooms.MAX_ROOM_MESSAGE))


def members(n, name="player"):
    return [rooms.MemberInfo(i, "{}{}".format(name, i)) for i in range(1, n + 1)]


def test_events_parse_back_to_what_the_server_built():
    [frame] = rooms.joined(9, ROOM, "dm", 2, {"map": "x"}, 8, True, False, members(2))
    assert rooms.parse_event(roundtrip(frame)) == rooms.RoomJoined(
        9, ROOM, "dm", 2, {"map": "x"}, 8, True, False, tuple(members(2)), False)
    assert rooms.parse_event(roundtrip(rooms.left(ROOM, "kicked"))) == rooms.RoomLeft(ROOM, "kicked")
    assert rooms.parse_event(roundtrip(rooms.left(ROOM, "left", rid=4))) == rooms.RoomLeft(
        ROOM, "left", 4)
    assert rooms.parse_event(roundtrip(rooms.presence(ROOM, "join", 3, "bob"))) == \
        rooms.RoomPresence(ROOM, "join", 3, "bob")
    assert rooms.parse_event(roundtrip(rooms.presence(ROOM, "leave", 3, "bob", "timeout"))) == \
        rooms.RoomPresence(ROOM, "leave", 3, "bob", "timeout")
    assert rooms.parse_event(roundtrip(rooms.message(ROOM, 0, b"tick"))) == \
        rooms.RoomMessage(ROOM, 0, b"tick")
    assert rooms.parse_event(roundtrip(rooms.label_changed(ROOM, {"a": 1}))) == \
        rooms.RoomLabel(ROOM, {"a": 1})
    info = rooms.RoomInfo(ROOM, "dm", {}, 3, 8)
    assert rooms.parse_event(roundtrip(rooms.rooms(1, [info]))) == rooms.RoomList(1, (info,))
    assert rooms.parse_event(roundtrip(rooms.error(ErrorCode.ROOM_FULL, "room full", 5))) == \
        rooms.RoomError(461, "room full", 5)
    assert rooms.parse_event(roundtrip(rooms.error(ErrorCode.NOT_IN_ROOM, "no"))) == \
        rooms.RoomError(466, "no", None)


def sealed_size(message):
    return len(wire.encode(wire.sealed(bytes(len(wire.encode(message)) + 16))))


def test_a_member_list_too_long_for_one_frame_continues_in_room_members():
    # 300 members with 64-character non-ASCII names (each sent as 6-byte escapes).
    many = members(300, name="ü" * 60)
    frames = rooms.joined(1, ROOM, "dm", 1, {"k": "v" * 400}, 300, True, True, many)
    assert len(frames) > 5
    assert all(sealed_size(f) <= wire.MAX_FRAME for f in frames)
    events = [rooms.parse_event(roundtrip(f)) for f in frames]
    assert isinstance(events[0], rooms.RoomJoined)
    assert all(isinstance(e, rooms.RoomMembers) for e in events[1:])
    assert [e.more for e in events] == [True] * (len(events) - 1) + [False]
    assert [m for e in events for m in e.members] == many
    # A short list stays in one frame with no "more".
    [one] = rooms.joined(1, ROOM, "dm", 1, {}, 8, True, True, members(8))
    assert "more" not in one


def test_a_room_list_holds_what_fits_and_says_more():
    infos = [rooms.RoomInfo(bytes([i]) * 8, "dm", {"k": "v" * 500}, 1, 8) for i in range(40)]
    answer = rooms.rooms(3, infos)
    assert sealed_size(answer) <= wire.MAX_FRAME
    event = rooms.parse_event(roundtrip(answer))
    assert event.more and 0 < len(event.rooms) < 40
    assert list(event.rooms) == infos[:len(event.rooms)]


@pytest.mark.parametrize("message", [
    {"type": "room_message", "room": "9f1c2e3d4c5b6a70", "from": -1, "data": ""},
    {"type": "room_message", "room": "9F1C2E3D4C5B6A70", "from": 1, "data": ""},
    {"type": "room_presence", "room": "9f1c2e3d4c5b6a70", "event": "wave", "member": 1, "user": "a"},
    {"type": "room_joined", "rid": 1, "room": "9f1c2e3d4c5b6a70"},
    {"type": "room_rooms", "rid": 1, "rooms": [1]},
    {"type": "room_error", "code": "461", "reason": "full"},
    {"type": "room_weather"},
])
def test_malformed_events_are_protocol_errors(message):
    with pytest.raises(ProtocolError):
        rooms.parse_event(message)


def test_room_send_payload_round_trips():
    payload = rooms.pack_room_send(ROOM, b"move", to=[2, 5, 2])
    assert payload == ROOM + bytes([2]) + (2).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"move"
    assert rooms.unpack_room_send(payload) == (ROOM, (2, 5), b"move")
    assert rooms.unpack_room_send(rooms.pack_room_send(ROOM, b"")) == (ROOM, (), b"")


def test_room_relay_payload_round_trips():
    payload = rooms.pack_room_relay(ROOM, 3, b"move")
    assert payload == ROOM + (3).to_bytes(4, "little") + b"move"
    assert rooms.unpack_room_relay(payload) == rooms.RoomDatagram(ROOM, 3, b"move")


@pytest.mark.parametrize("payload", [
    b"", ROOM[:7], ROOM,  # no count byte
    ROOM + bytes([2]) + bytes(7),  # two targets announced, less than 8 bytes of them
    ROOM + bytes([0]) + bytes(rooms.MAX_ROOM_DATAGRAM + 1),
])
def test_bad_room_send_payloads_are_dropped(payload):
    with pytest.raises(Drop) as caught:
        rooms.unpack_room_send(payload)
    assert caught.value.reason == "bad_room_datagram"


def test_short_room_relay_is_dropped():
    with pytest.raises(Drop):
        rooms.unpack_room_relay(ROOM + b"\x01\x00\x00")


def test_the_largest_room_datagram_still_fits_as_a_relay():
    data = bytes(rooms.MAX_ROOM_DATAGRAM)
    assert len(rooms.pack_room_send(ROOM, data)) <= MAX_PAYLOAD
    assert len(rooms.pack_room_relay(ROOM, 2 ** 32 - 1, data)) == MAX_PAYLOAD
    with pytest.raises(ValueError):
        rooms.pack_room_send(ROOM, data + b"x")
    with pytest.raises(ValueError):
        rooms.pack_room_send(ROOM, data, to=[1])  # the target pushes it over the datagram


def test_codec_constructors_make_the_documented_json():
    assert json.loads(wire.encode(rooms.create(1, "dm", listed=False))) == {
        "type": "room_create", "rid": 1, "room_type": "dm", "listed": False}
    assert rooms.send(ROOM, b"\x00", to=[2]) == {
        "type": "room_send", "room": "9f1c2e3d4c5b6a70", "data": "AA==", "to": [2]}


def test_join_options_reach_the_request_and_are_bounded():
    message = roundtrip(rooms.join(1, ROOM, options={"password": "sesame"}))
    assert rooms.parse_request(message) == rooms.JoinRoom(1, ROOM, {"password": "sesame"})
    assert rooms.parse_request(roundtrip(rooms.join_or_create(2, "dm", options={"team": "red"}))) \
        .options == {"team": "red"}
    with pytest.raises(rooms.RoomRefused) as caught:
        rooms.parse_request({"type": "room_join", "rid": 3, "room": ROOM.hex(), "options": [1]})
    assert caught.value.code == ErrorCode.BAD_LABEL and caught.value.rid == 3


# -- exact bounds, texts and reasons (mutation testing, docs/testing.md) -------------


def test_a_room_refusal_reads_and_copies_as_its_code_reason_and_rid():
    import copy
    import pickle

    refused = rooms.RoomRefused(ErrorCode.ROOM_FULL, "room full", 3)
    assert str(refused) == "room full (461)"
    assert refused.args == (ErrorCode.ROOM_FULL, "room full", 3)
    for again in (copy.copy(refused), pickle.loads(pickle.dumps(refused))):
        assert (again.code, again.reason, again.rid) == (ErrorCode.ROOM_FULL, "room full", 3)
    # The standard texts, unless a reason is given.
    assert rooms.refusal(ErrorCode.ROOM_FULL, 4).reason == "room full"
    assert rooms.refusal(ErrorCode.ROOM_NOT_FOUND).reason == "no such room"
    assert rooms.refusal(ErrorCode.ROOM_FULL, 4, "the arena is full").reason == "the arena is full"
    assert rooms.refusal(ErrorCode.ROOM_FULL, 4, "").reason == ""


def test_room_id_errors_say_what_a_room_id_is():
    with pytest.raises(ValueError, match=r"^a room id is 8 bytes$"):
        rooms.room_bytes(b"short")
    with pytest.raises(ValueError, match=r"^a room id is 16 hex characters$"):
        rooms.room_bytes("9f1c")


def protocol_error(message, parse=rooms.parse_request):
    with pytest.raises(ProtocolError) as caught:
        parse(message)
    return caught.value.code, caught.value.reason


def refusal_of(message, max_label_bytes=rooms.DEFAULT_MAX_LABEL_BYTES):
    with pytest.raises(rooms.RoomRefused) as caught:
        rooms.parse_request(message, max_label_bytes)
    return caught.value.code, caught.value.reason, caught.value.rid


def test_request_errors_name_the_field_and_refusals_give_their_text():
    assert protocol_error({"type": "room_join", "rid": 1, "room": 5}) == (
        ErrorCode.BAD_FIELD, "room must be a string")
    assert refusal_of({"type": "room_join", "rid": 1, "room": "nope"}) == (
        ErrorCode.ROOM_NOT_FOUND, "no such room", 1)
    assert refusal_of({"type": "room_create", "rid": 2, "room_type": "dm", "label": [1]}) == (
        ErrorCode.BAD_LABEL, "label must be a JSON object", 2)
    assert refusal_of({"type": "room_create", "rid": 2, "room_type": "dm",
                       "label": {"k": b"not JSON"}}) == (
        ErrorCode.BAD_LABEL, "label must be a JSON object", 2)
    assert refusal_of({"type": "room_join", "rid": 3, "room": ROOM.hex(), "options": [1]}, 40) == (
        ErrorCode.BAD_LABEL, "options must be a JSON object of at most 40 bytes", 3)
    assert protocol_error({"type": "room_send", "room": ROOM.hex(), "data": "", "to": 3}) == (
        ErrorCode.BAD_FIELD, "to must be a list of at most 255 member ids")


def test_join_options_are_bounded_by_their_size_as_sent_inclusive():
    options = {"password": "x" * 20}
    size = rooms.label_size(options)
    message = {"type": "room_join", "rid": 1, "room": ROOM.hex(), "options": options}
    assert rooms.parse_request(message, size).options == options
    assert refusal_of(message, size - 1)[0] == ErrorCode.BAD_LABEL


def test_room_send_targets_may_be_255_ids_from_0_to_2_to_the_32_minus_1():
    most = list(range(rooms.MAX_TARGETS))  # 0 (the handler) to 254
    edges = [0, 1, 2 ** 32 - 1]
    for to in (most, edges):
        assert rooms.parse_request(roundtrip(rooms.send(ROOM, b"x", to=to))).to == tuple(to)
        assert rooms.unpack_room_send(rooms.pack_room_send(ROOM, b"x", to)) == (ROOM, tuple(to), b"x")
    for bad in ([-1], [2 ** 32], ["3"], [True], [1.0]):
        assert protocol_error({"type": "room_send", "room": ROOM.hex(), "data": "",
                               "to": bad})[0] == ErrorCode.BAD_FIELD
        with pytest.raises(ValueError, match=r"^to: at most 255 member ids \(0 to 2\*\*32-1\)$"):
            rooms.send(ROOM, b"x", to=bad)
    with pytest.raises(ValueError, match=r"^to: at most 255 member ids"):
        rooms.send(ROOM, b"x", to=list(range(rooms.MAX_TARGETS + 1)))
    with pytest.raises(ValueError, match=r"^at most 255 targets$"):
        rooms.pack_room_send(ROOM, b"x", list(range(rooms.MAX_TARGETS + 1)))


def test_send_fits_a_frame_of_exactly_the_largest_inner_size():
    # 4069 bytes of data and 56 ten-digit targets encode to exactly MAX_INNER_FRAME bytes.
    to = list(range(10 ** 9, 10 ** 9 + 56))
    message = rooms.send(ROOM, bytes(4069), to=to)
    assert len(wire.encode(message)) == rooms.MAX_INNER_FRAME
    assert sealed_size(message) <= wire.MAX_FRAME
    with pytest.raises(ValueError, match=r"^room message and targets do not fit one frame$"):
        rooms.send(ROOM, bytes(4070), to=to + [10 ** 9 + 56])
    with pytest.raises(ValueError, match=r"^room message over 4096 bytes$"):
        rooms.send(ROOM, bytes(rooms.MAX_ROOM_MESSAGE + 1))


def test_room_datagram_payload_limits_are_inclusive_and_say_so():
    most = bytes(rooms.MAX_ROOM_DATAGRAM)
    payload = ROOM + bytes([0]) + most
    assert rooms.unpack_room_send(payload) == (ROOM, (), most)
    # One target and one byte less of data: a payload of exactly MAX_PAYLOAD.
    exact = rooms.pack_room_send(ROOM, most[:-1], [7])
    assert len(exact) == MAX_PAYLOAD
    assert rooms.unpack_room_send(exact) == (ROOM, (7,), most[:-1])
    over = "room datagram over {} bytes".format(rooms.MAX_ROOM_DATAGRAM)
    with pytest.raises(ValueError, match="^{}$".format(over)):
        rooms.pack_room_send(ROOM, most + b"x")
    with pytest.raises(ValueError, match="^{}$".format(over)):
        rooms.pack_room_relay(ROOM, 1, most + b"x")
    with pytest.raises(ValueError, match=r"^room datagram and targets over {} bytes$".format(MAX_PAYLOAD)):
        rooms.pack_room_send(ROOM, most, [7])
    # The relay header alone (no data) is a relay; one byte short is dropped.
    assert rooms.unpack_room_relay(ROOM + (9).to_bytes(4, "little")) == rooms.RoomDatagram(ROOM, 9, b"")
    with pytest.raises(Drop) as caught:
        rooms.unpack_room_relay(ROOM + bytes(3))
    assert caught.value.reason == "bad_room_datagram"


def test_room_datagram_member_ids_are_unsigned():
    payload = rooms.pack_room_send(ROOM, b"", [2 ** 31, 2 ** 32 - 1])
    assert rooms.unpack_room_send(payload) == (ROOM, (2 ** 31, 2 ** 32 - 1), b"")
    relay = rooms.pack_room_relay(ROOM, 2 ** 32 - 1, b"d")
    assert rooms.unpack_room_relay(relay).sender == 2 ** 32 - 1


def assert_frames_are_full(frames, key):
    """Each frame but the last is as full as it may be: its next item would not fit."""
    slack = []
    for frame, following in zip(frames, frames[1:]):
        size = len(wire.encode(frame))
        assert size <= rooms.MAX_INNER_FRAME and frame["more"] is True
        fuller = dict(frame, **{key: frame[key] + following[key][:1]})
        assert len(wire.encode(fuller)) > rooms.MAX_INNER_FRAME
        slack.append(rooms.MAX_INNER_FRAME - size)
    assert "more" not in frames[-1]
    return slack


def test_a_room_list_takes_every_room_that_fits_one_frame():
    slack = []
    for pad in range(300):  # labels of many sizes: some lists fill the frame to the byte
        infos = [rooms.RoomInfo(bytes([i]) * 8, "dm", {"k": "v" * ((pad * 37 + i * 101) % 400)}, 1, 8)
                 for i in range(60)]
        answer = rooms.rooms(1, infos)
        taken = len(answer["rooms"])
        assert answer["more"] is True and 0 < taken < 60
        size = len(wire.encode(answer))
        assert size <= rooms.MAX_INNER_FRAME
        # The next room, as the list would hold it, does not fit.
        [entry] = rooms.rooms(1, infos[taken:taken + 1])["rooms"]
        assert len(wire.encode(dict(answer, rooms=answer["rooms"] + [entry]))) > rooms.MAX_INNER_FRAME
        slack.append(rooms.MAX_INNER_FRAME - size)
    assert min(slack) == 0


def test_a_member_list_fills_each_frame_before_it_continues():
    slack = []
    for length in range(1, 80):
        many = [rooms.MemberInfo(i, "u" * length + str(i)) for i in range(1, 400)]
        frames = rooms.joined(1, ROOM, "dm", 1, {}, 400, True, True, many)
        assert [f["type"] for f in frames] == ["room_joined"] + ["room_members"] * (len(frames) - 1)
        slack += assert_frames_are_full(frames, "members")
        assert [m["member"] for f in frames for m in f["members"]] == list(range(1, 400))
    assert min(slack) == 0


def test_request_ids_run_from_0_and_limits_are_inclusive():
    assert rooms.parse_request(rooms.join(0, ROOM)).rid == 0
    assert rooms.parse_request(rooms.create(1, "dm", max_members=2 ** 32 - 1)).max_members == 2 ** 32 - 1
    assert rooms.parse_request(rooms.create(1, "d" * 32)).room_type == "d" * 32
    # A label sent as null is an empty label.
    assert rooms.parse_request({"type": "room_create", "rid": 1, "room_type": "dm",
                                "label": None}).label == {}
    assert rooms.parse_event(dict(rooms.error(ErrorCode.ROOM_FULL, "x"), code=0)).code == 0
    assert rooms.parse_event(dict(rooms.error(ErrorCode.ROOM_FULL, "x"), code=999)).code == 999
    assert protocol_error(dict(rooms.error(ErrorCode.ROOM_FULL, "x"), code=1000), rooms.parse_event) == (
        ErrorCode.BAD_FIELD, "code must be an integer from 0 to 999")


def test_refusals_of_options_and_labels_echo_the_rid_and_say_the_size():
    big = {"k": "v" * 600}
    for build in (rooms.create, rooms.join_or_create):
        message = dict(build(7, "dm"), options=[1])
        assert refusal_of(message)[::2] == (ErrorCode.BAD_LABEL, 7)
    size = rooms.label_size(big)
    assert refusal_of(rooms.create(8, "dm", big)) == (
        ErrorCode.BAD_LABEL, "label is {} bytes; at most 512".format(size), 8)
    # A room_send to a room id that cannot exist: "not in that room", no rid.
    assert refusal_of({"type": "room_send", "room": "nope", "data": ""}) == (
        ErrorCode.NOT_IN_ROOM, "not in that room", None)


@pytest.mark.parametrize("message, code, reason", [
    ({"type": "room_create", "rid": 1, "room_type": "dm", "listed": "yes"},
     ErrorCode.BAD_FIELD, "listed must be true or false"),
    ({"type": "room_create", "rid": 1, "room_type": "dm", "max_members": 0},
     ErrorCode.BAD_FIELD, "max_members must be an integer of at least 1"),
    ({"type": "room_create", "rid": 1, "room_type": "dm", "max_members": 2 ** 32},
     ErrorCode.BAD_FIELD, "max_members must be an integer of at least 1"),
    ({"type": "room_list", "rid": 1, "room_type": 5}, ErrorCode.BAD_FIELD, "room_type must be a string"),
    ({"type": "room_teleport", "rid": 1}, ErrorCode.UNKNOWN_TYPE, "unknown message type 'room_teleport'"),
    ({"type": "room_" + "x" * 60, "rid": 1}, ErrorCode.UNKNOWN_TYPE,
     "unknown message type '{}'".format(("room_" + "x" * 60)[:40])),
])
def test_malformed_requests_say_which_field(message, code, reason):
    assert protocol_error(message) == (code, reason)


def test_a_bad_room_type_is_refused_with_its_rule():
    assert refusal_of({"type": "room_list", "rid": 4, "room_type": "no spaces"}) == (
        ErrorCode.BAD_ROOM_TYPE, "room_type must be 1-32 characters of A-Z a-z 0-9 _ . -", 4)


JOINED = rooms.joined(1, ROOM, "dm", 1, {}, 8, True, True, [rooms.MemberInfo(1, "a")])[0]
PRESENCE = rooms.presence(ROOM, "leave", 2, "bob", "left")


@pytest.mark.parametrize("message, code, reason", [
    (dict(JOINED, listed="yes"), ErrorCode.BAD_FIELD, "listed must be true or false"),
    (dict(JOINED, more=1), ErrorCode.BAD_FIELD, "more must be true or false"),
    (dict(JOINED, room="9F1C2E3D4C5B6A70"), ErrorCode.BAD_FIELD,
     "room must be 16 lowercase hex characters"),
    (dict(JOINED, members=[1]), ErrorCode.BAD_FIELD, "members must be a list of objects"),
    (dict(JOINED, members="a"), ErrorCode.BAD_FIELD, "members must be a list of objects"),
    (dict(JOINED, label=[]), ErrorCode.BAD_FIELD, "label must be an object"),
    (dict(JOINED, room_type=3), ErrorCode.BAD_FIELD, "room_type must be a string"),
    (dict(PRESENCE, event="wave"), ErrorCode.BAD_FIELD,
     "event must be join, leave, reconnecting or back"),
    (dict(PRESENCE, reason=3), ErrorCode.BAD_FIELD, "reason must be a string"),
    (dict(PRESENCE, user=None), ErrorCode.BAD_FIELD, "user must be a string"),
    ({"type": "room_rooms", "rid": 1, "rooms": [1]}, ErrorCode.BAD_FIELD,
     "rooms must be a list of objects"),
    (rooms.message(ROOM, 1, bytes(4097)), ErrorCode.BAD_FIELD, "data must be at most 4096 bytes"),
    ({"type": "room_weather"}, ErrorCode.UNKNOWN_TYPE, "unknown message type 'room_weather'"),
    ({"type": "room_" + "w" * 60}, ErrorCode.UNKNOWN_TYPE,
     "unknown message type '{}'".format(("room_" + "w" * 60)[:40])),
])
def test_malformed_events_say_which_field(message, code, reason):
    assert protocol_error(message, rooms.parse_event) == (code, reason)
    assert rooms.parse_event(rooms.message(ROOM, 1, bytes(4096))).data == bytes(4096)
