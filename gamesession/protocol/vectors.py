"""Test vectors for docs/protocol.md, computed by the real code paths.

``python -m gamesession.protocol.vectors`` prints the block that the protocol document
holds; tests/test_vectors.py checks the document against this and checks this
against an independent derivation from the primitives.
"""

import struct

from nacl.public import PrivateKey

from gamesession.protocol import resume, rooms, transfer, wire
from gamesession.protocol.clientcore import ClientCore, Welcome
from gamesession.protocol.datagram import DatagramChannel, Kind
from gamesession.protocol.handshake import StreamCipher, nonce, server_respond

SERVER_STATIC = PrivateKey(bytes(range(32)))
CLIENT_EPHEMERAL = PrivateKey(bytes(range(32, 64)))
SERVER_EPHEMERAL = PrivateKey(bytes(range(64, 96)))
TOKEN = bytes.fromhex("0102030405060708")
USER = "alice"
PASSWORD = "correct horse"
PING_ID = bytes.fromhex("00000000000000ff")
ROOM = bytes.fromhex("9f1c2e3d4c5b6a70")
TICKET = "T1cKeT-0123456789_abcdEF"


def transfer_vectors() -> "list[tuple[str, bytes]]":
    """The redirect to another node and the ticket login there (inner frames)."""
    return [("frame_" + name, wire.encode(message)) for name, message in [
        ("room_redirect", transfer.redirect(3, ROOM, "game-b.example", 7100, 7101, TICKET, 10.0)),
        ("ticket_login", transfer.ticket_login(TICKET, 3)),
    ]]


def room_vectors() -> "list[tuple[str, bytes]]":
    """Every room message and datagram payload form (inner frames, before sealing)."""
    alice, bob = rooms.MemberInfo(1, "alice"), rooms.MemberInfo(2, "bob")
    frames = [
        ("room_create", rooms.create(1, "deathmatch", {"map": "q2dm1"}, 8)),
        ("room_create_private", rooms.create(2, "duel", listed=False, options={"team": "red"})),
        ("room_join", rooms.join(3, ROOM)),
        ("room_join_or_create", rooms.join_or_create(4, "deathmatch", {"map": "q2dm1"}, 8)),
        ("room_leave", rooms.leave(5, ROOM)),
        ("room_list", rooms.list_rooms(6, "deathmatch")),
        ("room_send", rooms.send(ROOM, b"hello room")),
        ("room_send_to", rooms.send(ROOM, b"hi bob", to=[2])),
        ("room_joined", rooms.joined(3, ROOM, "deathmatch", 2, {"map": "q2dm1"}, 8, True, False,
                                     [alice, bob])[0]),
        ("room_members", {"type": "room_members", "room": rooms.room_hex(ROOM),
                          "members": [{"member": 3, "user": "carol"}]}),
        ("room_left", rooms.left(ROOM, "left", rid=5)),
        ("room_left_closed", rooms.left(ROOM, "closed")),
        ("room_presence_join", rooms.presence(ROOM, "join", 2, "bob")),
        ("room_presence_leave", rooms.presence(ROOM, "leave", 2, "bob", "timeout")),
        ("room_message", rooms.message(ROOM, 1, b"hello room")),
        ("room_message_handler", rooms.message(ROOM, rooms.HANDLER, b"tick 42")),
        ("room_label", rooms.label_changed(ROOM, {"map": "q2dm2"})),
        ("room_rooms", rooms.rooms(6, [rooms.RoomInfo(ROOM, "deathmatch", {"map": "q2dm1"}, 2, 8)])),
        ("room_error", rooms.error(wire.ErrorCode.ROOM_FULL, "room full", rid=3)),
    ]
    out = [("frame_" + name, wire.encode(message)) for name, message in frames]
    out += [
        ("room_send_payload", rooms.pack_room_send(ROOM, b"pos", to=[2, 3])),
        ("room_send_all_payload", rooms.pack_room_send(ROOM, b"pos")),
        ("room_relay_payload", rooms.pack_room_relay(ROOM, 1, b"pos")),
    ]
    return out


# The resume (docs/protocol.md, "Session resume"): a ticket from the first
# login, then a second handshake with fresh ephemeral keys.
RESUME_ID = bytes(range(0xa0, 0xb0))
RESUME_SECRET = bytes(range(0xc0, 0xe0))
RESUME_GRACE = 20.0
CLIENT_EPHEMERAL_2 = PrivateKey(bytes(range(96, 128)))
SERVER_EPHEMERAL_2 = PrivateKey(bytes(range(128, 160)))
TOKEN_2 = bytes.fromhex("1112131415161718")
RESUME_ID_2 = bytes(range(0xe0, 0xf0))
RESUME_SECRET_2 = bytes(range(0x10, 0x30))


def _challenge(reply) -> bytes:
    return wire.encode({
        "type": "challenge", "version": wire.PROTOCOL_VERSION,
        "server_key": wire.b64(reply.server_ephemeral), "confirm": wire.b64(reply.confirm),
    })


def _handshake_vectors(prefix: str, client_ephemeral, server_ephemeral, reply) -> list:
    """The ephemeral keys and the four session keys of one handshake."""
    keys = reply.keys
    return [
        (prefix + "client_ephemeral_private", bytes(client_ephemeral)),
        (prefix + "client_ephemeral_public", bytes(client_ephemeral.public_key)),
        (prefix + "server_ephemeral_private", bytes(server_ephemeral)),
        (prefix + "server_ephemeral_public", reply.server_ephemeral),
        (prefix + "key_tcp_c2s", keys.tcp_c2s),
        (prefix + "key_tcp_s2c", keys.tcp_s2c),
        (prefix + "key_udp_c2s", keys.udp_c2s),
        (prefix + "key_udp_s2c", keys.udp_s2c),
    ]


def compute_resume() -> "list[tuple[str, bytes]]":
    """The resume handshake after the login of ``compute``, and the first datagram after it."""
    core = ClientCore(bytes(SERVER_STATIC.public_key), USER, PASSWORD, ephemeral=CLIENT_EPHEMERAL)
    core.welcome = Welcome(USER, TOKEN, 7001, 10.0, 2.0,
                           resume.Ticket(RESUME_ID, RESUME_SECRET, RESUME_GRACE))
    hello = core.reconnect(ephemeral=CLIENT_EPHEMERAL_2)
    reply = server_respond(SERVER_STATIC, bytes(CLIENT_EPHEMERAL_2.public_key), SERVER_EPHEMERAL_2)
    keys = reply.keys
    [request], _ = core.frame_received(_challenge(reply))
    proof = resume.proof(RESUME_SECRET, bytes(CLIENT_EPHEMERAL_2.public_key),
                         reply.server_ephemeral, bytes(SERVER_STATIC.public_key))
    server_tcp = StreamCipher(keys.tcp_s2c, 1)
    resumed = wire.encode(wire.sealed(server_tcp.seal(wire.encode({
        "type": "resumed", "user": USER, "token": wire.b64(TOKEN_2), "udp_port": 7001,
        "session_timeout": 10.0, "keepalive": 2.0,
        **resume.ticket_fields(resume.Ticket(RESUME_ID_2, RESUME_SECRET_2, RESUME_GRACE)),
    }))))
    core.frame_received(resumed)
    ping = core.datagram(Kind.PING, PING_ID)
    return [
        ("resume_id", RESUME_ID),
        ("resume_secret", RESUME_SECRET),
    ] + _handshake_vectors("resume_", CLIENT_EPHEMERAL_2, SERVER_EPHEMERAL_2, reply) + [
        ("resume_proof", proof),
        ("frame_resume_hello", hello),
        ("frame_resume", request),
        ("frame_resumed", resumed),
        ("resumed_token", TOKEN_2),
        ("udp_ping_c2s_after_resume", ping),
    ]


def compute() -> "list[tuple[str, bytes]]":
    core = ClientCore(bytes(SERVER_STATIC.public_key), USER, PASSWORD, ephemeral=CLIENT_EPHEMERAL)
    reply = server_respond(SERVER_STATIC, bytes(CLIENT_EPHEMERAL.public_key), SERVER_EPHEMERAL)
    keys = reply.keys
    hello = core.hello()
    challenge = _challenge(reply)
    [login], _ = core.frame_received(challenge)
    # The same handshake made for a move: the ticket login is the client's frame 0.
    mover = ClientCore(bytes(SERVER_STATIC.public_key), USER, None, ephemeral=CLIENT_EPHEMERAL,
                       ticket_login=transfer.ticket_login(TICKET, 3))
    mover.hello()
    [ticket_login], _ = mover.frame_received(challenge)
    server_tcp = StreamCipher(keys.tcp_s2c, 1)
    welcome = wire.encode(wire.sealed(server_tcp.seal(wire.encode({
        "type": "welcome", "user": USER, "token": wire.b64(TOKEN), "udp_port": 7001,
        "session_timeout": 10.0, "keepalive": 2.0,
    }))))
    client_udp = DatagramChannel(TOKEN, keys.udp_c2s, keys.udp_s2c)
    server_udp = DatagramChannel(TOKEN, keys.udp_s2c, keys.udp_c2s)
    ping = client_udp.seal(Kind.PING, PING_ID)
    client_udp.seal(Kind.KEEPALIVE)
    data = client_udp.seal(Kind.DATA, b"hello")
    pong = server_udp.seal(Kind.PONG, PING_ID)
    room_send = client_udp.seal(Kind.ROOM_SEND, rooms.pack_room_send(ROOM, b"pos", to=[2, 3]))
    room_relay = server_udp.seal(Kind.ROOM_RELAY, rooms.pack_room_relay(ROOM, 1, b"pos"))
    client_tcp = core.sender  # counter 1 after the login
    sealed_join = core.seal_message(rooms.join(3, ROOM))
    sealed_joined = wire.encode(wire.sealed(server_tcp.seal(wire.encode(rooms.joined(
        3, ROOM, "deathmatch", 2, {"map": "q2dm1"}, 8, True, False,
        [rooms.MemberInfo(1, "alice"), rooms.MemberInfo(2, "bob")])[0]))))
    assert client_tcp.counter == 2
    return [
        ("server_static_private", bytes(SERVER_STATIC)),
        ("server_static_public", bytes(SERVER_STATIC.public_key)),
    ] + _handshake_vectors("", CLIENT_EPHEMERAL, SERVER_EPHEMERAL, reply) + [
        ("nonce_counter_1", nonce(1)),
        ("confirm", reply.confirm),
        ("frame_hello", hello),
        ("frame_hello_int16", struct.pack("!H", len(hello)) + hello),
        ("frame_hello_line", hello + b"\n"),
        ("frame_challenge", challenge),
        ("frame_login", login),
        ("frame_welcome", welcome),
        ("token", TOKEN),
        ("udp_ping_c2s_counter_0", ping),
        ("udp_data_c2s_counter_2", data),
        ("udp_pong_s2c_counter_0", pong),
        ("frame_room_join_sealed_c2s_counter_1", sealed_join),
        ("frame_room_joined_sealed_s2c_counter_2", sealed_joined),
        ("udp_room_send_c2s_counter_3", room_send),
        ("udp_room_relay_s2c_counter_1", room_relay),
        ("frame_ticket_login_sealed_c2s_counter_0", ticket_login),
    ] + room_vectors() + compute_resume() + transfer_vectors()


def render() -> str:
    lines = ["```vectors"]
    for name, value in compute():
        lines.append("{}: {}".format(name, value.hex()))
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
