"""The TCP login service, driven synchronously through fake transports."""

import json
import struct

import pytest
from nacl.public import PrivateKey

from gamesession.protocol import wire
from gamesession.protocol.clientcore import LoginFailed, SessionEnded, Welcome
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.protocol.wire import ErrorCode

from fakes import Harness, logged_events


@pytest.fixture(params=["int16", "line"])
def harness(request):
    return Harness(framing=request.param, users={"alice": "pw", "bob": "pw2"})


def error_of(connection):
    """The single error the server sent (clear or sealed), and that it closed."""
    assert connection.closed
    frames = connection.received()
    assert len(frames) == 1, frames
    message = wire.decode(frames[0])
    if message["type"] == "sealed":
        with pytest.raises(LoginFailed) as info:
            connection.core.frame_received(frames[0])
        return info.value.code
    assert message["type"] == "error"
    return message["code"]


def test_login_success_registers_the_session(harness):
    connection = harness.connect()
    [welcome] = connection.login("alice", "pw")
    assert isinstance(welcome, Welcome)
    assert welcome.user == "alice" and welcome.udp_port == 7001
    assert welcome.session_timeout == 10.0 and welcome.keepalive == 2.0
    session = harness.registry.by_token[welcome.token]
    assert harness.registry.by_user["alice"] is session
    assert harness.registry.by_control[connection.protocol] is session
    assert harness.stats.logins["ok"] == 1
    assert harness.stats.tcp_pending_login == 0
    assert not connection.closed


def test_credentials_never_cross_in_clear(harness):
    connection = harness.connect()
    sent = []
    original = connection.send
    connection.send = lambda payload: (sent.append(payload), original(payload))[1]
    connection.login("alice", "pw")
    assert not any(b"alice" in payload or b'"pw"' in payload for payload in sent)


def test_wrong_password(harness):
    connection = harness.connect()
    connection.send(connection.handshake("alice", "nope"))
    assert error_of(connection) == ErrorCode.AUTH_FAILED
    assert harness.stats.logins["auth_failed"] == 1
    assert not harness.registry.by_user


def test_unknown_user(harness):
    connection = harness.connect()
    with pytest.raises(LoginFailed) as info:
        connection.login("mallory", "pw")
    assert info.value.code == ErrorCode.AUTH_FAILED


def test_wrong_pinned_key_stops_before_sending_credentials(harness):
    connection = harness.connect()
    with pytest.raises(ServerKeyMismatch):
        connection.login("alice", "pw", server_key=bytes(PrivateKey.generate().public_key))
    assert connection.transport.value() == b""


def test_impostor_server_cannot_complete_the_handshake():
    """A server with another private key fails the client's key check."""
    impostor = Harness(users={"alice": "pw"})
    impostor.factory.server_key = PrivateKey.generate()
    with pytest.raises(ServerKeyMismatch):
        impostor.connect().login("alice", "pw")


def test_guests_when_no_checker():
    harness = Harness()
    connection, session = harness.logged_in("anyone", "")
    assert session.avatar.name == "anyone"


@pytest.mark.parametrize("payload, code", [
    (b"\xff\xfe not utf-8", ErrorCode.BAD_FRAME),
    (b"{not json", ErrorCode.BAD_FRAME),
    (b"[1, 2]", ErrorCode.BAD_FRAME),
    (b'{"type": 5}', ErrorCode.BAD_FRAME),
    (b"[" * 5000 + b"]" * 5000, ErrorCode.FRAME_TOO_LONG),
    (b"[" * 4000 + b"]" * 4000, ErrorCode.BAD_FRAME),
    (b'{"type": "launch_missiles"}', ErrorCode.UNKNOWN_TYPE),
    (b'{"type": "login", "user": "alice", "password": "pw"}', ErrorCode.UNEXPECTED),
    (b'{"type": "hello", "version": 2, "client_key": ""}', ErrorCode.BAD_VERSION),
    (b'{"type": "hello", "version": 1, "client_key": 7}', ErrorCode.BAD_FIELD),
    (b'{"type": "hello", "version": 1, "client_key": "AAAA"}', ErrorCode.BAD_FIELD),
    (json.dumps({"type": "hello", "version": 1, "client_key": wire.b64(bytes(32))}).encode(),
     ErrorCode.BAD_FIELD),
])
def test_bad_clear_frames_get_a_code_and_a_close(harness, payload, code):
    connection = harness.connect()
    if harness.framing == "line" and b"\n" in payload:
        pytest.skip("newline is a delimiter in line framing")  # not a missing tool
    connection.send(payload)
    assert error_of(connection) == code
    assert harness.stats.protocol_errors[code.name.lower()] == 1
    # Anything after the error is ignored, not answered.
    connection.send(b'{"type": "hello"}')
    assert connection.received() == []


def test_oversized_frame(harness):
    connection = harness.connect()
    if harness.framing == "int16":
        connection.protocol.dataReceived(struct.pack("!H", wire.MAX_FRAME + 1))
    else:
        connection.protocol.dataReceived(b"x" * (wire.MAX_FRAME + 10))
    assert error_of(connection) == ErrorCode.FRAME_TOO_LONG


def test_sealed_phase_rejects_clear_frames_and_bad_boxes(harness):
    connection = harness.connect()
    connection.handshake()
    connection.send(wire.encode({"type": "sealed", "box": wire.b64(b"x" * 40)}))
    assert error_of(connection) == ErrorCode.BAD_BOX


def test_clear_login_after_challenge_is_unexpected(harness):
    connection = harness.connect()
    connection.handshake()
    connection.send(b'{"type": "login", "user": "alice", "password": "pw"}')
    assert error_of(connection) == ErrorCode.UNEXPECTED


@pytest.mark.parametrize("inner, code", [
    ({"type": "login", "user": "", "password": "pw"}, ErrorCode.BAD_FIELD),
    ({"type": "login", "user": "alice"}, ErrorCode.BAD_FIELD),
    ({"type": "login", "user": "a" * 65, "password": "pw"}, ErrorCode.BAD_FIELD),
    ({"type": "login", "user": ["alice"], "password": "pw"}, ErrorCode.BAD_FIELD),
    ({"type": "data", "data": ""}, ErrorCode.UNEXPECTED),
    ({"type": "frobnicate"}, ErrorCode.UNKNOWN_TYPE),
])
def test_bad_sealed_login_messages(harness, inner, code):
    connection = harness.connect()
    connection.handshake()
    connection.core.sender.counter = 0  # the bad message replaces the login
    connection.send(connection.core.seal_message(inner))
    assert error_of(connection) == code
    assert not harness.registry.by_user


def test_second_login_on_one_connection(harness):
    connection, session = harness.logged_in()
    connection.send(connection.core.seal_message({"type": "login", "user": "bob", "password": "pw2"}))
    assert error_of(connection) == ErrorCode.UNEXPECTED
    connection.lose()
    assert session.ended == "disconnected" and len(harness.registry) == 0


def test_messages_while_cred_is_deciding_are_refused():
    from twisted.internet import defer
    harness = Harness()
    pending = defer.Deferred()
    harness.factory.portal.login = lambda *a: pending
    connection = harness.connect()
    connection.send(connection.handshake())
    connection.send(connection.core.logout())
    assert error_of(connection) == ErrorCode.UNEXPECTED
    # The late answer from cred opens no session for a closed connection.
    logged_out = []
    from gamesession.server.accounts import Player
    pending.callback((None, Player("alice"), lambda: logged_out.append(1)))
    assert not harness.registry.by_user and logged_out == [1]


def test_login_timeout(harness):
    connection = harness.connect()
    harness.clock.advance(9.9)
    assert not connection.closed
    harness.clock.advance(0.2)
    assert error_of(connection) == ErrorCode.LOGIN_TIMEOUT
    assert harness.stats.tcp_pending_login == 0


def test_logged_in_connection_has_no_login_timeout(harness):
    connection, session = harness.logged_in()
    harness.clock.advance(9)
    connection.send(connection.core.data_message(b"still here"))
    harness.clock.advance(2)
    assert not connection.closed and session.ended is None
    assert harness.stats.protocol_errors["login_timeout"] == 0


def test_logout_ends_the_session(harness):
    connection, session = harness.logged_in()
    connection.send(connection.core.logout())
    assert connection.pump() == [SessionEnded("logout")]
    assert connection.closed
    assert session.ended == "logout"
    assert not harness.registry.by_token and not harness.registry.by_user
    assert not harness.registry.by_control
    assert harness.stats.logouts["logout"] == 1


def test_tcp_close_ends_the_session(harness):
    connection, session = harness.logged_in()
    connection.lose()
    assert session.ended == "disconnected"
    assert len(harness.registry) == 0


def test_duplicate_login_kick_replaces_the_old_session():
    harness = Harness(users={"alice": "pw"}, duplicate_login="kick")
    first, old = harness.logged_in()
    second, new = harness.logged_in()
    assert old.ended == "replaced" and new.ended is None
    assert first.pump() == [SessionEnded("replaced")]
    assert first.closed and not second.closed
    assert old.token not in harness.registry.by_token
    assert harness.registry.by_user["alice"] is new
    # The old connection closing later does not touch the new session.
    first.lose()
    assert new.ended is None and harness.registry.by_user["alice"] is new


def test_duplicate_login_reject_keeps_the_old_session():
    harness = Harness(users={"alice": "pw"}, duplicate_login="reject")
    first, old = harness.logged_in()
    second = harness.connect()
    with pytest.raises(LoginFailed) as info:
        second.login("alice", "pw")
    assert info.value.code == ErrorCode.ALREADY_LOGGED_IN
    assert old.ended is None and harness.registry.by_user["alice"] is old
    assert harness.stats.logins["already_logged_in"] == 1


def test_max_sessions():
    harness = Harness(users={"alice": "pw", "bob": "pw"}, max_sessions=1)
    harness.logged_in("alice")
    with pytest.raises(LoginFailed) as info:
        harness.connect().login("bob", "pw")
    assert info.value.code == ErrorCode.SERVER_FULL


def test_tcp_data_reaches_the_application_and_echoes(harness):
    connection, session = harness.logged_in()
    connection.send(connection.core.data_message(b"hello over tcp"))
    [event] = connection.pump()
    assert event.payload == b"hello over tcp"


def test_shutdown_tells_every_client(harness):
    a, _ = harness.logged_in("alice", "pw")
    b, _ = harness.logged_in("bob", "pw2")
    harness.registry.shutdown()
    assert a.pump() == [SessionEnded("shutdown")]
    assert b.pump() == [SessionEnded("shutdown")]
    assert a.closed and b.closed and len(harness.registry) == 0
    assert harness.stats.logouts["shutdown"] == 2


# -- edges the mutation run found unpinned (docs/testing.md) ----------------------------------

def test_the_welcome_carries_the_servers_timers():
    harness = Harness(users={"alice": "pw"}, session_timeout=7.0, keepalive=1.5)
    [welcome] = harness.connect().login("alice", "pw")
    assert (welcome.session_timeout, welcome.keepalive) == (7.0, 1.5)


def test_a_login_is_logged_with_its_user_peer_and_outcome():
    from twisted.logger import formatEvent

    harness = Harness(users={"alice": "pw"})
    events = logged_events(lambda: harness.connect(host="192.0.2.9").login("alice", "pw"))
    [login] = [e for e in events if e.get("event") == "login"]
    assert (login["user"], login["peer"], login["outcome"]) == ("alice", "192.0.2.9", "ok")
    assert formatEvent(login) == "login ok: user=alice from 192.0.2.9"
