"""The protocol document's test vectors: the code makes them, and they follow the spec.

The independent derivation uses hashlib's BLAKE2b and raw libsodium calls,
exactly as docs/protocol.md describes them, not the project's helpers.
"""

import base64
import hashlib
import json
import os
import re
import struct

from nacl.bindings import crypto_scalarmult, crypto_secretbox_open

from gamesession.protocol.vectors import compute

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "protocol.md")


def documented():
    with open(DOC) as f:
        text = f.read()
    block = re.search(r"```vectors\n(.*?)```", text, re.S).group(1)
    return dict(line.split(": ", 1) for line in block.strip().splitlines())


def test_document_matches_the_code():
    computed = {name: value.hex() for name, value in compute()}
    assert documented() == computed


def _nonce(n):
    return struct.pack("<Q", n) + bytes(16)


def test_vectors_follow_the_written_key_schedule():
    v = {k: bytes.fromhex(h) for k, h in documented().items()}
    es = crypto_scalarmult(v["client_ephemeral_private"], v["server_static_public"])
    ee = crypto_scalarmult(v["client_ephemeral_private"], v["server_ephemeral_public"])
    prk = hashlib.blake2b(
        b"gamesession v1" + es + ee + v["client_ephemeral_public"]
        + v["server_ephemeral_public"] + v["server_static_public"], digest_size=32).digest()
    for label in ("tcp c2s", "tcp s2c", "udp c2s", "udp s2c"):
        expected = hashlib.blake2b(label.encode(), key=prk, digest_size=32).digest()
        assert v["key_" + label.replace(" ", "_")] == expected
    assert v["nonce_counter_1"] == _nonce(1)
    assert crypto_secretbox_open(v["confirm"], _nonce(0), v["key_tcp_s2c"]) == b""


def test_frames_follow_the_written_formats():
    v = {k: bytes.fromhex(h) for k, h in documented().items()}
    hello = json.loads(v["frame_hello"])
    assert hello == {"type": "hello", "version": 1,
                     "client_key": base64.b64encode(v["client_ephemeral_public"]).decode()}
    assert v["frame_hello_int16"] == struct.pack("!H", len(v["frame_hello"])) + v["frame_hello"]
    assert v["frame_hello_line"] == v["frame_hello"] + b"\n"

    login = json.loads(v["frame_login"])
    assert login["type"] == "sealed"
    inner = crypto_secretbox_open(base64.b64decode(login["box"]), _nonce(0), v["key_tcp_c2s"])
    assert json.loads(inner) == {"type": "login", "user": "alice", "password": "correct horse"}

    welcome = json.loads(v["frame_welcome"])
    inner = json.loads(crypto_secretbox_open(base64.b64decode(welcome["box"]), _nonce(1),
                                             v["key_tcp_s2c"]))
    assert inner["type"] == "welcome" and base64.b64decode(inner["token"]) == v["token"]


def _keys(prk):
    return {label: hashlib.blake2b(label.encode(), key=prk, digest_size=32).digest()
            for label in ("tcp c2s", "tcp s2c", "udp c2s", "udp s2c")}


def test_resume_follows_the_written_proof_and_key_switch():
    v = {k: bytes.fromhex(h) for k, h in documented().items()}
    ce, se, ss = (v["resume_client_ephemeral_public"], v["resume_server_ephemeral_public"],
                  v["server_static_public"])
    # A fresh handshake: fresh keys, as for a login.
    es = crypto_scalarmult(v["resume_client_ephemeral_private"], ss)
    ee = crypto_scalarmult(v["resume_client_ephemeral_private"], se)
    keys = _keys(hashlib.blake2b(b"gamesession v1" + es + ee + ce + se + ss, digest_size=32).digest())
    for label, key in keys.items():
        assert v["resume_key_" + label.replace(" ", "_")] == key
        assert key != v["key_" + label.replace(" ", "_")]
    hello = json.loads(v["frame_resume_hello"])
    assert hello == {"type": "hello", "version": 1, "client_key": base64.b64encode(ce).decode()}
    # The proof: keyed BLAKE2b-256 over the label and the three public keys.
    proof = hashlib.blake2b(b"gamesession v1 resume" + ce + se + ss, key=v["resume_secret"],
                            digest_size=32).digest()
    assert v["resume_proof"] == proof
    request = json.loads(v["frame_resume"])
    inner = crypto_secretbox_open(base64.b64decode(request["box"]), _nonce(0), keys["tcp c2s"])
    assert json.loads(inner) == {"type": "resume",
                                 "resume_id": base64.b64encode(v["resume_id"]).decode(),
                                 "proof": base64.b64encode(proof).decode()}
    resumed = json.loads(v["frame_resumed"])
    inner = json.loads(crypto_secretbox_open(base64.b64decode(resumed["box"]), _nonce(1),
                                             keys["tcp s2c"]))
    assert inner["type"] == "resumed" and base64.b64decode(inner["token"]) == v["resumed_token"]
    assert len(base64.b64decode(inner["resume_id"])) == 16
    assert len(base64.b64decode(inner["resume_secret"])) == 32 and inner["resume_grace"] == 20.0
    # The first datagram after the switch: new token, counter 0, new udp c2s key.
    packet = v["udp_ping_c2s_after_resume"]
    assert packet[:8] == v["resumed_token"] and struct.unpack("<Q", packet[8:16])[0] == 0
    plain = crypto_secretbox_open(packet[16:], _nonce(0), keys["udp c2s"])
    assert plain == b"\x01" + bytes.fromhex("00000000000000ff")


def test_datagrams_follow_the_written_format():
    v = {k: bytes.fromhex(h) for k, h in documented().items()}
    for name, key, counter, kind, payload in [
        ("udp_ping_c2s_counter_0", "key_udp_c2s", 0, 1, bytes.fromhex("00000000000000ff")),
        ("udp_data_c2s_counter_2", "key_udp_c2s", 2, 5, b"hello"),
        ("udp_pong_s2c_counter_0", "key_udp_s2c", 0, 2, bytes.fromhex("00000000000000ff")),
    ]:
        packet = v[name]
        assert packet[:8] == v["token"]
        assert struct.unpack("<Q", packet[8:16])[0] == counter
        assert len(packet) == 33 + len(payload)
        plain = crypto_secretbox_open(packet[16:], _nonce(counter), v[key])
        assert plain == bytes([kind]) + payload


ROOM_HEX = "9f1c2e3d4c5b6a70"


def test_room_frames_follow_the_written_formats():
    """Each room vector is the JSON that docs/protocol.md §9 describes, written out by hand."""
    v = {k: bytes.fromhex(h) for k, h in documented().items()}
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    expected = {
        "room_create": {"type": "room_create", "rid": 1, "room_type": "deathmatch",
                        "label": {"map": "q2dm1"}, "max_members": 8},
        "room_create_private": {"type": "room_create", "rid": 2, "room_type": "duel",
                                "listed": False, "options": {"team": "red"}},
        "room_join": {"type": "room_join", "rid": 3, "room": ROOM_HEX},
        "room_join_or_create": {"type": "room_join_or_create", "rid": 4,
                                "room_type": "deathmatch", "label": {"map": "q2dm1"},
                                "max_members": 8},
        "room_leave": {"type": "room_leave", "rid": 5, "room": ROOM_HEX},
        "room_list": {"type": "room_list", "rid": 6, "room_type": "deathmatch"},
        "room_send": {"type": "room_send", "room": ROOM_HEX, "data": b64(b"hello room")},
        "room_send_to": {"type": "room_send", "room": ROOM_HEX, "data": b64(b"hi bob"), "to": [2]},
        "room_joined": {"type": "room_joined", "rid": 3, "room": ROOM_HEX,
                        "room_type": "deathmatch", "member": 2, "label": {"map": "q2dm1"},
                        "max_members": 8, "listed": True, "created": False,
                        "members": [{"member": 1, "user": "alice"},
                                    {"member": 2, "user": "bob"}]},
        "room_members": {"type": "room_members", "room": ROOM_HEX,
                         "members": [{"member": 3, "user": "carol"}]},
        "room_left": {"type": "room_left", "room": ROOM_HEX, "reason": "left", "rid": 5},
        "room_left_closed": {"type": "room_left", "room": ROOM_HEX, "reason": "closed"},
        "room_presence_join": {"type": "room_presence", "room": ROOM_HEX, "event": "join",
                               "member": 2, "user": "bob"},
        "room_presence_leave": {"type": "room_presence", "room": ROOM_HEX, "event": "leave",
                                "member": 2, "user": "bob", "reason": "timeout"},
        "room_message": {"type": "room_message", "room": ROOM_HEX, "from": 1,
                         "data": b64(b"hello room")},
        "room_message_handler": {"type": "room_message", "room": ROOM_HEX, "from": 0,
                                 "data": b64(b"tick 42")},
        "room_label": {"type": "room_label", "room": ROOM_HEX, "label": {"map": "q2dm2"}},
        "room_rooms": {"type": "room_rooms", "rid": 6, "rooms": [
            {"room": ROOM_HEX, "room_type": "deathmatch", "label": {"map": "q2dm1"},
             "members": 2, "max_members": 8}]},
        "room_error": {"type": "room_error", "code": 461, "reason": "room full", "rid": 3},
    }
    for name, message in expected.items():
        frame = v["frame_" + name]
        # Canonical form: compact, sorted keys, ASCII.
        assert frame == json.dumps(message, separators=(",", ":"), sort_keys=True).encode(), name
    # The sealed forms open under the written keys and counters to those frames.
    sealed = json.loads(v["frame_room_join_sealed_c2s_counter_1"])
    assert crypto_secretbox_open(base64.b64decode(sealed["box"]), _nonce(1),
                                 v["key_tcp_c2s"]) == v["frame_room_join"]
    sealed = json.loads(v["frame_room_joined_sealed_s2c_counter_2"])
    assert crypto_secretbox_open(base64.b64decode(sealed["box"]), _nonce(2),
                                 v["key_tcp_s2c"]) == v["frame_room_joined"]


def test_transfer_frames_follow_the_written_formats():
    """The redirect and the ticket login of docs/protocol.md §9.9, written out by hand."""
    v = {k: bytes.fromhex(h) for k, h in documented().items()}
    ticket = "T1cKeT-0123456789_abcdEF"
    expected = {
        "room_redirect": {"type": "room_redirect", "rid": 3, "room": ROOM_HEX,
                          "host": "game-b.example", "port": 7100, "udp_port": 7101,
                          "ticket": ticket, "expires": 10.0},
        "ticket_login": {"type": "ticket_login", "ticket": ticket, "rid": 3},
    }
    for name, message in expected.items():
        assert v["frame_" + name] == json.dumps(message, separators=(",", ":"),
                                                sort_keys=True).encode(), name
    # In place of the login: the client's first sealed frame (counter 0) of the new handshake.
    sealed = json.loads(v["frame_ticket_login_sealed_c2s_counter_0"])
    assert sealed["type"] == "sealed"
    assert crypto_secretbox_open(base64.b64decode(sealed["box"]), _nonce(0),
                                 v["key_tcp_c2s"]) == v["frame_ticket_login"]


def test_room_datagrams_follow_the_written_layout():
    v = {k: bytes.fromhex(h) for k, h in documented().items()}
    room = bytes.fromhex(ROOM_HEX)
    assert v["room_send_payload"] == room + bytes([2]) + struct.pack("<II", 2, 3) + b"pos"
    assert v["room_send_all_payload"] == room + bytes([0]) + b"pos"
    assert v["room_relay_payload"] == room + struct.pack("<I", 1) + b"pos"
    for name, key, counter, kind, payload in [
        ("udp_room_send_c2s_counter_3", "key_udp_c2s", 3, 6, v["room_send_payload"]),
        ("udp_room_relay_s2c_counter_1", "key_udp_s2c", 1, 7, v["room_relay_payload"]),
    ]:
        packet = v[name]
        assert packet[:8] == v["token"]
        assert struct.unpack("<Q", packet[8:16])[0] == counter
        plain = crypto_secretbox_open(packet[16:], _nonce(counter), v[key])
        assert plain == bytes([kind]) + payload


def test_every_error_code_is_in_the_document():
    from gamesession.protocol.wire import ErrorCode

    with open(DOC) as f:
        text = f.read()
    for code in ErrorCode:
        assert re.search(r"^\| {} \| {} \|".format(int(code), code.name), text, re.M), code
