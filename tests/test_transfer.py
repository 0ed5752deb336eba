"""The cluster-transfer codec (gamesession/protocol/transfer.py): room_redirect and ticket_login.

The moves themselves, on two in-memory nodes: tests/test_cluster_rooms.py;
across real twistd nodes: tests/test_cluster_rooms_process.py.
"""

import pytest

from gamesession.protocol import rooms, transfer, wire
from gamesession.protocol.wire import ErrorCode, ProtocolError

ROOM = bytes.fromhex("9f1c2e3d4c5b6a70")
TICKET = "Ab0_-" * 4 + "zz"  # 22 characters, as the server makes them


def roundtrip(message):
    return wire.decode(wire.encode(message))


def refused(parse, message):
    with pytest.raises(ProtocolError) as caught:
        parse(message)
    assert caught.value.code == ErrorCode.BAD_FIELD
    return caught.value.reason


def test_a_ticket_is_16_to_64_url_safe_base64_characters():
    for good in ("a" * 16, "Z" * 64, "0123456789-_abcdefXYZ", TICKET):
        assert transfer.valid_ticket(good)
    for bad in ("a" * 15, "a" * 65, "a" * 16 + "\n", "a" * 15 + "=", "a" * 15 + "/", "a" * 15 + "+",
                "\u00e9" * 16, "", None, b"a" * 16, 16, ["a" * 16]):
        assert not transfer.valid_ticket(bad)


def test_ticket_login_is_built_as_documented_and_parses_back():
    assert transfer.ticket_login(TICKET) == {"type": "ticket_login", "ticket": TICKET, "rid": 0}
    message = transfer.ticket_login(TICKET, 7, {"team": "red"})
    assert message == {"type": "ticket_login", "ticket": TICKET, "rid": 7, "options": {"team": "red"}}
    assert transfer.parse_ticket_login(roundtrip(message)) == transfer.TicketLogin(
        TICKET, 7, {"team": "red"})
    # No options, or empty ones, are left out; absent fields parse to their defaults.
    assert "options" not in transfer.ticket_login(TICKET, 1, {})
    assert transfer.parse_ticket_login({"type": "ticket_login", "ticket": TICKET}) == \
        transfer.TicketLogin(TICKET, 0, {})
    assert transfer.TicketLogin(TICKET) == transfer.TicketLogin(TICKET, 0, {})


def test_ticket_login_refuses_to_build_with_a_bad_ticket_and_names_it_briefly():
    with pytest.raises(ValueError, match=r"^not a transfer ticket: 'short'$"):
        transfer.ticket_login("short")
    with pytest.raises(ValueError) as caught:
        transfer.ticket_login("!" * 500)
    assert str(caught.value) == "not a transfer ticket: '" + "!" * 56  # 80 characters


def test_a_malformed_ticket_login_is_a_bad_field():
    ticket_text = "ticket must be 16-64 characters of A-Z a-z 0-9 _ -"
    assert refused(transfer.parse_ticket_login, {"type": "ticket_login"}) == ticket_text
    assert refused(transfer.parse_ticket_login, {"ticket": "a" * 65}) == ticket_text
    assert refused(transfer.parse_ticket_login, {"ticket": TICKET, "rid": -1}) == \
        "rid must be an integer from 0 to 2147483647"
    assert refused(transfer.parse_ticket_login, {"ticket": TICKET, "rid": 2 ** 31}) == \
        "rid must be an integer from 0 to 2147483647"
    assert transfer.parse_ticket_login({"ticket": TICKET, "rid": 2 ** 31 - 1}).rid == 2 ** 31 - 1
    for options in ([1], "x", 3, None):
        assert refused(transfer.parse_ticket_login, {"ticket": TICKET, "options": options}) == \
            "options must be a JSON object"


def redirect(**changes):
    fields = dict(rid=5, room=ROOM, host="node-b.example", port=7000, udp_port=7001,
                  ticket=TICKET, expires=10.0)
    fields.update(changes)
    return transfer.redirect(**fields)


def test_room_redirect_is_built_as_documented_and_parses_back():
    message = redirect(expires=9.87654)
    assert message == {"type": "room_redirect", "rid": 5, "room": "9f1c2e3d4c5b6a70",
                       "host": "node-b.example", "port": 7000, "udp_port": 7001,
                       "ticket": TICKET, "expires": 9.877}
    event = transfer.parse_redirect(roundtrip(message))
    assert event == transfer.RoomRedirect(5, ROOM, "node-b.example", 7000, 7001, TICKET, 9.877)
    # A redirect is a room event for the client.
    assert rooms.parse_event(roundtrip(message)) == event
    # Whole seconds are sent and read as a float.
    assert redirect(expires=3)["expires"] == 3.0 and type(redirect(expires=3)["expires"]) is float
    assert type(transfer.parse_redirect(dict(message, expires=3)).expires) is float


def test_room_redirect_limits_are_inclusive():
    for changes in (dict(rid=0, port=1, udp_port=1, expires=0), dict(rid=2 ** 31 - 1, port=65535,
                                                                     udp_port=65535, expires=3600)):
        event = transfer.parse_redirect(roundtrip(redirect(**changes)))
        assert (event.rid, event.port, event.udp_port, event.expires) == (
            changes["rid"], changes["port"], changes["udp_port"], float(changes["expires"]))
    longest = "h" * 253
    assert transfer.parse_redirect(redirect(host=longest)).host == longest


@pytest.mark.parametrize("changes, reason", [
    (dict(room="9F1C2E3D4C5B6A70"), "room must be 16 lowercase hex characters"),
    (dict(room="9f1c2e3d4c5b6a7"), "room must be 16 lowercase hex characters"),
    (dict(room="9f1c2e3d4c5b6a70\n"), "room must be 16 lowercase hex characters"),
    (dict(room=12), "room must be 16 lowercase hex characters"),
    (dict(ticket="short"), "ticket must be 16-64 characters of A-Z a-z 0-9 _ -"),
    (dict(ticket=None), "ticket must be 16-64 characters of A-Z a-z 0-9 _ -"),
    (dict(expires=-0.001), "expires must be seconds from 0 to 3600"),
    (dict(expires=3600.001), "expires must be seconds from 0 to 3600"),
    (dict(expires="10"), "expires must be seconds from 0 to 3600"),
    (dict(expires=True), "expires must be seconds from 0 to 3600"),
    (dict(expires=None), "expires must be seconds from 0 to 3600"),
    (dict(rid=-1), "rid must be an integer from 0 to 2147483647"),
    (dict(rid=2 ** 31), "rid must be an integer from 0 to 2147483647"),
    (dict(host=""), "host must be a non-empty string of at most 253 characters"),
    (dict(host="h" * 254), "host must be a non-empty string of at most 253 characters"),
    (dict(port=0), "port must be an integer from 1 to 65535"),
    (dict(port=65536), "port must be an integer from 1 to 65535"),
    (dict(udp_port=0), "udp_port must be an integer from 1 to 65535"),
    (dict(udp_port=65536), "udp_port must be an integer from 1 to 65535"),
])
def test_a_malformed_room_redirect_is_a_bad_field(changes, reason):
    message = dict(redirect(), **changes)
    assert refused(transfer.parse_redirect, message) == reason
