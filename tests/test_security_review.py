"""Issue 13: what a security review broke on a real server, one test (or more) per finding.

In-memory (``hardening.MemoryServer``, task.Clock) where the finding is
logic; a real twistd on loopback where it is about sockets and the reactor
(findings 2, 7, 9, 12).  Each test failed before its fix.
"""

import json
import logging

import pytest
from twisted.logger import globalLogPublisher

from gamesession.protocol import wire
from gamesession.protocol.clientcore import ClientCore, LoginFailed
from gamesession.protocol.wire import ErrorCode, ProtocolError

from hardening import MemoryServer, error_codes

pytestmark = pytest.mark.timeout(60)


def logged_lines(run):
    """Text of every log event emitted while ``run()`` runs."""
    from twisted.logger import formatEvent
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [formatEvent(e) for e in events]


# -- 5: lone surrogates and control characters ----------------------------------------

@pytest.mark.parametrize("field", ["user", "password"])
def test_lone_surrogates_get_422_not_500(field):
    server = MemoryServer(users={"alice": "pw"})
    conn = server.connect()
    login = {"user": "alice", "password": "pw"}
    login[field] = "a\ud800b"
    core = ClientCore(bytes(server.key.public_key), **login)
    conn.send(core.hello())
    [challenge] = conn.frames()
    [sealed_login], _ = core.frame_received(challenge)
    conn.send(sealed_login)
    [frame] = conn.frames()
    with pytest.raises(LoginFailed) as info:
        core.frame_received(frame)
    assert info.value.code == ErrorCode.BAD_FIELD
    assert server.stats.protocol_errors["bad_field"] == 1
    assert server.stats.logins["error"] == 0


def test_wire_refuses_lone_surrogates_in_text_fields():
    with pytest.raises(ProtocolError) as info:
        wire.text_field(json.loads('{"u": "\\udc80"}'), "u", 64)
    assert info.value.code == ErrorCode.BAD_FIELD
    assert wire.text_field({"u": "Zoë 🎮"}, "u", 64) == "Zoë 🎮"


def test_user_names_are_escaped_in_log_lines():
    server = MemoryServer()  # guest mode: any name logs in
    evil = "mallory\x1b[2J\r\nlogin ok: user=admin"
    lines = logged_lines(lambda: server.connect().login(evil))
    mine = [line for line in lines if "mallory" in line]
    assert mine, lines
    for line in mine:
        assert "\x1b" not in line and "\r" not in line and "\n" not in line
        assert "mallory\\x1b[2J\\r\\nlogin ok" in line
    assert server.registry.by_user[evil].user == evil  # the session keeps the real name


# -- 6: the client takes no clear frame once the channel is sealed ----------------------

def test_client_refuses_a_clear_error_after_the_handshake():
    server = MemoryServer()
    conn = server.connect()
    core = ClientCore(bytes(server.key.public_key), "alice", "")
    conn.send(core.hello())
    [challenge] = conn.frames()
    core.frame_received(challenge)
    forged = wire.encode(wire.error(ErrorCode.AUTH_FAILED, "forged in clear"))
    with pytest.raises(ProtocolError) as info:
        core.frame_received(forged)
    assert info.value.code == ErrorCode.UNEXPECTED
    # Before the handshake a clear error is the server's answer.
    early = ClientCore(bytes(server.key.public_key), "alice", "")
    with pytest.raises(LoginFailed):
        early.frame_received(forged)


# -- 11: no presence oracle ------------------------------------------------------------

def test_duplicate_reject_answers_409_only_to_the_right_password():
    server = MemoryServer(users={"alice": "pw"}, duplicate_login="reject")
    assert server.connect().login("alice", "pw")[0].user == "alice"
    assert error_codes(server.connect().login("alice", "guess")) == [ErrorCode.AUTH_FAILED]
    assert error_codes(server.connect().login("alice", "pw")) == [ErrorCode.ALREADY_LOGGED_IN]
    assert server.stats.logins["auth_failed"] == 1


# -- 13: the hello version is the integer 1 ---------------------------------------------

@pytest.mark.parametrize("version", [1.0, True, "1", [1]])
def test_hello_version_must_be_the_integer_1(version):
    server = MemoryServer()
    conn = server.connect()
    hello = json.loads(ClientCore(bytes(server.key.public_key), "a", "").hello())
    hello["version"] = version
    conn.send(json.dumps(hello).encode())
    [frame] = conn.frames()
    assert json.loads(frame)["code"] == ErrorCode.BAD_VERSION
    assert conn.closed
