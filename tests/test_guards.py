"""The guards an audit found never run (issue 18), each made to run and to matter.

All in memory (tests/fakes.py ``Harness``, ``task.Clock``): a slow and a
crashing cred checker, the INTERNAL catch-all, ``--auth file:`` and ``unix``
logins, an avatar logout and an application that raise, a UDP send that
fails, colliding tokens, ``end()`` twice, the client refusing a bad server
key, a bad confirm box and a misbehaving server, counter exhaustion and the
PyNaCl-bindings secretbox fallback.  (The knock rule's and the nft gate's
guards are in tests/test_knock_guards.py.)
"""

import sys
import types

import pytest
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.logger import capturedLogs
from zope.interface import implementer

from gamesession.protocol import handshake, wire
from gamesession.protocol.clientcore import ClientCore, LoginFailed, SessionEnded, Welcome
from gamesession.protocol.datagram import DatagramChannel, Kind
from gamesession.protocol.handshake import (MAX_COUNTER, BadBox, ServerKeyMismatch, StreamCipher,
                                            server_respond)
from gamesession.protocol.wire import ErrorCode, ProtocolError
from gamesession.server import login as login_module
from gamesession.server import tap

from fakes import SERVER_KEY, Harness, RecordingApp, check_registry, error_codes, session_ends

CLIENT_UDP = ("198.51.100.7", 40000)


@implementer(ICredentialsChecker)
class SlowChecker:
    """A cred checker that answers only when the test says so (a slow database)."""

    from twisted.cred.credentials import IUsernamePassword
    credentialInterfaces = (IUsernamePassword,)

    def __init__(self):
        self.waiting = []  # (username, Deferred)

    def requestAvatarId(self, credentials):
        d = defer.Deferred()
        self.waiting.append((credentials.username, d))
        return d

    def accept(self, index):
        user, d = self.waiting[index]
        d.callback(user)


@implementer(ICredentialsChecker)
class CrashingChecker:
    from twisted.cred.credentials import IUsernamePassword
    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials):
        raise RuntimeError("the account database is on fire")


# -- the second check_admission in SessionRegistry.open ------------------------------------

def test_a_slow_checker_cannot_kick_under_duplicate_login_reject():
    """Two logins of one user both pass the first admission check while cred is
    slow; the one cred accepts second is refused, the first session stays."""
    checker = SlowChecker()
    harness = Harness(checkers=[checker], duplicate_login="reject", application=RecordingApp())
    first, second = harness.connect(), harness.connect()
    assert first.attempt_login("alice") == [] and second.attempt_login("alice") == []
    assert len(checker.waiting) == 2
    checker.accept(0)
    [welcome] = first.server_events()
    assert isinstance(welcome, Welcome)
    session = harness.registry.by_user["alice"]
    checker.accept(1)
    assert error_codes(second.server_events()) == [ErrorCode.ALREADY_LOGGED_IN]
    assert second.closed and not first.closed
    assert harness.registry.by_user["alice"] is session and not session.ended
    assert first.server_events() == []  # never told it was replaced
    assert harness.stats.logins == {"ok": 1, "already_logged_in": 1}
    check_registry(harness.registry)


def test_a_slow_checker_cannot_overfill_max_sessions():
    checker = SlowChecker()
    harness = Harness(checkers=[checker], max_sessions=1)
    alice, bob = harness.connect(), harness.connect()
    alice.attempt_login("alice")
    bob.attempt_login("bob")
    checker.accept(0)
    checker.accept(1)
    assert isinstance(alice.server_events()[0], Welcome)
    assert error_codes(bob.server_events()) == [ErrorCode.SERVER_FULL]
    assert len(harness.registry) == 1 and list(harness.registry.by_user) == ["alice"]
    assert harness.stats.logins["server_full"] == 1


def test_a_refused_late_login_logs_its_avatar_out():
    checker = SlowChecker()
    harness = Harness(checkers=[checker], max_sessions=1)
    logged_out = []
    harness.factory.portal.realm.requestAvatar = (
        lambda avatar_id, mind, *interfaces: (interfaces[0], object(),
                                              lambda: logged_out.append(avatar_id)))
    alice, bob = harness.connect(), harness.connect()
    alice.attempt_login("alice")
    bob.attempt_login("bob")
    checker.accept(0)
    checker.accept(1)
    assert logged_out == [b"bob"]  # the avatar id, as cred gives it


# -- login: a crashing checker and the INTERNAL catch-all -----------------------------------

def test_a_crashing_checker_gets_internal_and_a_close():
    harness = Harness(checkers=[CrashingChecker()])
    connection = harness.connect()
    with capturedLogs() as events:
        got = connection.attempt_login("alice")
    assert error_codes(got) == [ErrorCode.INTERNAL] and connection.closed
    assert harness.stats.logins["error"] == 1
    assert harness.stats.protocol_errors["internal"] == 1
    assert len(harness.registry) == 0 and harness.stats.tcp_pending_login == 0
    assert any(e.get("log_failure") is not None and "login check failed" in e["log_format"]
               for e in events)


def test_an_unexpected_error_in_a_frame_handler_gets_internal_not_a_crash(monkeypatch):
    def broken(*args):
        raise KeyError("a bug")
    monkeypatch.setattr(login_module, "server_respond", broken)
    harness = Harness()
    connection = harness.connect()
    with capturedLogs() as events:
        connection.send(ClientCore(bytes(SERVER_KEY.public_key), "a", "").hello())
    [frame] = connection.received()
    assert wire.decode(frame)["code"] == ErrorCode.INTERNAL
    assert connection.closed and harness.stats.protocol_errors["internal"] == 1
    assert any(e.get("log_failure") is not None for e in events)
    # The server still serves the next client once the bug is gone.
    monkeypatch.undo()
    harness.logged_in("bob", "")


# -- --auth file: and unix ------------------------------------------------------------------

def checkers_of(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options["credCheckers"]


def test_login_through_auth_file(tmp_path):
    accounts = tmp_path / "accounts"
    accounts.write_text("alice:s3cret\nbob:hunter2\n")
    harness = Harness(checkers=checkers_of("--auth", "file:" + str(accounts)))
    connection, session = harness.logged_in("alice", "s3cret")
    assert session.user == "alice"
    assert error_codes(harness.connect().attempt_login("bob", "s3cret")) == [ErrorCode.AUTH_FAILED]
    assert error_codes(harness.connect().attempt_login("carol", "")) == [ErrorCode.AUTH_FAILED]


def test_login_through_auth_unix(monkeypatch):
    crypt = pytest.importorskip("crypt")  # not a missing tool: Twisted's unix checker needs it
    hashed = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_SHA512))

    def getpwnam(name):
        if name != "dave":
            raise KeyError(name)
        return types.SimpleNamespace(pw_passwd=hashed)
    monkeypatch.setitem(sys.modules, "pwd", types.SimpleNamespace(getpwnam=getpwnam))
    harness = Harness(checkers=checkers_of("--auth", "unix"))
    _, session = harness.logged_in("dave", "pw")
    assert session.user == "dave"
    assert error_codes(harness.connect().attempt_login("dave", "wrong")) == [ErrorCode.AUTH_FAILED]


# -- the registry: what raises around it does not stop it ------------------------------------

def test_an_avatar_logout_that_raises_still_ends_the_session():
    app = RecordingApp()
    harness = Harness(application=app)
    connection, session = harness.logged_in("alice", "")

    def logout():
        raise RuntimeError("realm bug")
    session.logout = logout
    with capturedLogs() as events:
        harness.registry.end(session, "kicked")
    assert session.ended == "kicked" and len(harness.registry) == 0
    assert app.events[-1] == ("ended", "alice", "kicked")
    assert session_ends(connection.pump()) == ["kicked"]
    assert any("avatar logout failed" in e["log_format"] for e in events)


class RaisingApp:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def method(*args):
            self.calls.append(name)
            raise RuntimeError(name)
        return method


def test_an_application_that_raises_disturbs_no_session():
    app = RaisingApp()
    harness = Harness(application=app)
    with capturedLogs() as events:
        connection, session = harness.logged_in("alice", "")
        connection.send(connection.core.data_message(b"hi"))
        harness.registry.datagram_received(connection.core.datagram(Kind.DATA, b"x"), CLIENT_UDP)
        harness.registry.datagram_received(connection.core.datagram(Kind.PING, b"p"), CLIENT_UDP)
    assert app.calls == ["session_started", "message_received", "datagram_received"]
    assert not connection.closed and not session.ended
    # The session still works: its PING got a PONG, its logout ends it.
    [(packet, _)] = harness.udp_sent()
    assert connection.core.datagram_received(packet) == (Kind.PONG, b"p")
    with capturedLogs():
        connection.send(connection.core.logout())
    assert session.ended == "logout" and app.calls[-1] == "session_ended"
    assert sum("application {method} failed" in e["log_format"] for e in events) == 3


class FailingUDP:
    def write(self, packet, address):
        raise OSError(101, "Network is unreachable")


def test_a_failed_udp_send_is_counted_and_the_session_lives():
    harness = Harness()
    connection, session = harness.logged_in("alice", "")
    harness.registry.datagram_received(connection.core.datagram(Kind.KEEPALIVE), CLIENT_UDP)
    harness.registry.transport = FailingUDP()
    assert session.send_datagram(b"x") is True
    session.send_datagram(b"y")
    assert harness.stats.dropped["send_error"] == 2
    assert harness.stats.udp_out_packets == 2
    assert not session.ended


def test_a_token_collision_draws_again():
    drawn = [b"A" * 8, b"A" * 8, b"A" * 8, b"B" * 8]
    sizes = []

    def random_bytes(n):
        sizes.append(n)
        return drawn.pop(0)
    harness = Harness(random_bytes=random_bytes)
    _, first = harness.logged_in("alice", "")
    _, second = harness.logged_in("bob", "")
    assert first.token == b"A" * 8 and second.token == b"B" * 8
    assert drawn == [] and sizes == [8, 8, 8, 8]
    check_registry(harness.registry)


def test_end_twice_ends_once():
    app = RecordingApp()
    harness = Harness(application=app)
    connection, session = harness.logged_in("alice", "")
    harness.registry.end(session, "kicked")
    harness.registry.end(session, "timeout")
    assert session.ended == "kicked"
    assert harness.stats.logouts == {"kicked": 1}
    assert [e for e in app.events if e[0] == "ended"] == [("ended", "alice", "kicked")]
    assert session_ends(connection.pump()) == ["kicked"]


# -- the client refuses what a real server would never send -----------------------------------

def challenge_for(core, static=SERVER_KEY, **changes):
    hello = wire.decode(core.hello())
    reply = server_respond(static, wire.bytes_field(hello, "client_key", size=32))
    message = {"type": "challenge", "version": wire.PROTOCOL_VERSION,
               "server_key": wire.b64(reply.server_ephemeral), "confirm": wire.b64(reply.confirm)}
    message.update(changes)
    return wire.encode(message), reply


def test_the_client_refuses_an_unusable_server_key():
    core = ClientCore(bytes(SERVER_KEY.public_key), "alice", "pw")
    frame, _ = challenge_for(core, server_key=wire.b64(bytes(32)))  # a low-order point
    with pytest.raises(ServerKeyMismatch) as info:
        core.frame_received(frame)
    assert str(info.value) == "server sent an unusable key"
    with pytest.raises(handshake.HandshakeError) as info:
        handshake._dh(bytes(range(32)), bytes(32))
    assert str(info.value) == "unusable public key"
    assert core.sender is None  # no login was sealed


def test_the_client_refuses_a_confirm_box_that_does_not_open():
    core = ClientCore(bytes(SERVER_KEY.public_key), "alice", "pw")
    frame, reply = challenge_for(core)
    confirm = bytearray(reply.confirm)
    confirm[0] ^= 1
    frame, _ = challenge_for(core, server_key=wire.b64(reply.server_ephemeral),
                             confirm=wire.b64(bytes(confirm)))
    with pytest.raises(ServerKeyMismatch) as info:
        core.frame_received(frame)
    assert str(info.value) == "server key mismatch"
    assert core.sender is None


def test_the_client_refuses_a_confirm_box_with_a_plaintext():
    core = ClientCore(bytes(SERVER_KEY.public_key), "alice", "pw")
    _, reply = challenge_for(core)
    box = handshake.seal(reply.keys.tcp_s2c, 0, b"not empty")
    frame, _ = challenge_for(core, server_key=wire.b64(reply.server_ephemeral), confirm=wire.b64(box))
    with pytest.raises(ServerKeyMismatch):
        core.frame_received(frame)


class FakeServer:
    """The server's side of one login, by hand, to misbehave on purpose."""

    def __init__(self):
        self.core = ClientCore(bytes(SERVER_KEY.public_key), "alice", "pw")
        frame, reply = challenge_for(self.core)
        self.core.frame_received(frame)
        self.sender = StreamCipher(reply.keys.tcp_s2c, 1)
        self.keys = reply.keys

    def sealed(self, message=None, plain=None):
        plain = wire.encode(message) if plain is None else plain
        return wire.encode(wire.sealed(self.sender.seal(plain)))

    def welcome(self, **changes):
        message = {"type": "welcome", "user": "alice", "token": wire.b64(b"T" * 8),
                   "udp_port": 7001, "session_timeout": 10, "keepalive": 2}
        message.update(changes)
        return self.sealed(message)


def test_the_client_against_a_server_that_skips_the_challenge():
    core = ClientCore(bytes(SERVER_KEY.public_key), "alice", "pw")
    with pytest.raises(ProtocolError) as info:
        core.frame_received(wire.encode({"type": "welcome"}))
    assert info.value.code == ErrorCode.UNEXPECTED
    with pytest.raises(LoginFailed) as refused:
        core.frame_received(wire.encode(wire.error(ErrorCode.SERVER_FULL, "full")))
    assert refused.value.code == ErrorCode.SERVER_FULL and refused.value.reason == "full"


@pytest.mark.parametrize("frame, code", [
    (b"not json", ErrorCode.BAD_FRAME),
    (wire.encode({"type": "sealed", "box": wire.b64(b"x" * 40)}), ErrorCode.BAD_BOX),
    (wire.encode({"type": "sealed"}), ErrorCode.BAD_FIELD),
])
def test_the_client_against_garbage_after_the_challenge(frame, code):
    server = FakeServer()
    with pytest.raises(ProtocolError) as info:
        server.core.frame_received(frame)
    assert info.value.code == code
    assert server.core.welcome is None


@pytest.mark.parametrize("changes, code", [
    ({"token": wire.b64(b"short")}, ErrorCode.BAD_FIELD),
    ({"udp_port": 0}, ErrorCode.BAD_FIELD),
    ({"udp_port": 65536}, ErrorCode.BAD_FIELD),
    ({"user": 7}, ErrorCode.BAD_FIELD),
])
def test_the_client_refuses_a_bad_welcome(changes, code):
    server = FakeServer()
    with pytest.raises(ProtocolError) as info:
        server.core.frame_received(server.welcome(**changes))
    assert info.value.code == code
    assert server.core.welcome is None and server.core.channel is None


def test_the_client_against_unknown_and_error_messages_in_session():
    server = FakeServer()
    server.core.frame_received(server.welcome())
    with pytest.raises(ProtocolError) as info:
        server.core.frame_received(server.sealed({"type": "surprise"}))
    assert info.value.code == ErrorCode.UNKNOWN_TYPE
    with pytest.raises(LoginFailed) as failed:
        server.core.frame_received(server.sealed({"type": "error", "code": "x", "reason": 5}))
    assert (failed.value.code, failed.value.reason) == (0, "error")
    assert server.core.frame_received(server.sealed({"type": "session_end"})) == \
        ([], [SessionEnded("")])
    with pytest.raises(ProtocolError) as info:
        server.core.frame_received(server.sealed({"type": "data", "data": "%%%"}))
    assert info.value.code == ErrorCode.BAD_FIELD


def test_the_client_drops_datagrams_of_another_token():
    server = FakeServer()
    server.core.frame_received(server.welcome())
    theirs = DatagramChannel(b"U" * 8, server.keys.udp_s2c, server.keys.udp_c2s)
    from gamesession.protocol.datagram import Drop
    with pytest.raises(Drop) as drop:
        server.core.datagram_received(theirs.seal(Kind.DATA, b"x"))
    assert drop.value.reason == "unknown_token"
    ours = DatagramChannel(b"T" * 8, server.keys.udp_s2c, server.keys.udp_c2s)
    assert server.core.datagram_received(ours.seal(Kind.DATA, b"x")) == (Kind.DATA, b"x")


# -- counters run out, and the secretbox fallback --------------------------------------------

def test_the_datagram_counter_runs_out_instead_of_reusing_a_nonce():
    channel = DatagramChannel(b"T" * 8, bytes(32), bytes(32))
    channel.send_counter = MAX_COUNTER - 1
    last = channel.seal(Kind.DATA)
    assert int.from_bytes(last[8:16], "little") == MAX_COUNTER - 1
    with pytest.raises(OverflowError, match="exhausted"):
        channel.seal(Kind.DATA)
    assert channel.send_counter == MAX_COUNTER


def test_the_stream_counter_runs_out_instead_of_reusing_a_nonce():
    cipher = StreamCipher(bytes(32), MAX_COUNTER - 1)
    box = cipher.seal(b"last")
    assert handshake.open_box(bytes(32), MAX_COUNTER - 1, box) == b"last"
    with pytest.raises(BadBox):
        cipher.seal(b"one too many")
    with pytest.raises(BadBox):
        StreamCipher(bytes(32), MAX_COUNTER).open(box)


def test_seal_refuses_a_counter_beyond_64_bits():
    with pytest.raises(OverflowError):
        handshake.seal(bytes(32), 2**64, b"x")
    with pytest.raises(ValueError):
        handshake.seal(bytes(31), 0, b"x")
    with pytest.raises(BadBox):
        handshake.open_box(bytes(32), 2**64, bytes(17))


@pytest.mark.parametrize("size", [0, 1, 100, 2047, 2048, 5000])
def test_the_bindings_fallback_seals_and_opens_the_same_bytes(size):
    """``_public_seal``/``_public_open`` (PyNaCl's checked bindings) serve when
    the direct libsodium calls are missing: same boxes, same refusals."""
    key, plain = bytes(range(32)), bytes(range(256)) * (size // 256) + bytes(size % 256)
    box = handshake.seal(key, 7, plain)
    assert handshake._public_seal(key, 7, plain) == box
    assert handshake._public_open(key, 7, box) == plain
    assert handshake.open_box(key, 7, handshake._public_seal(key, 7, plain)) == plain
    tampered = bytes([box[0] ^ 1]) + box[1:]
    for bad in [(key, 8, box), (key, 7, tampered), (key, 7, box[:15]), (key[:31], 7, box),
                (key, 2**64, box)]:
        with pytest.raises(BadBox):
            handshake._public_open(*bad)
        with pytest.raises(BadBox):
            handshake.open_box(*bad)


def test_the_fallback_can_carry_a_whole_login(monkeypatch):
    monkeypatch.setattr(handshake, "seal", handshake._public_seal)
    monkeypatch.setattr(handshake, "open_box", handshake._public_open)
    from gamesession.protocol import datagram
    monkeypatch.setattr(datagram, "seal", handshake._public_seal)
    monkeypatch.setattr(datagram, "open_box", handshake._public_open)
    harness = Harness()
    connection, session = harness.logged_in("alice", "")
    harness.registry.datagram_received(connection.core.datagram(Kind.PING, b"p"), CLIENT_UDP)
    [(packet, _)] = harness.udp_sent()
    assert connection.core.datagram_received(packet) == (Kind.PONG, b"p")


# -- edges the mutation run found unpinned (docs/testing.md) ----------------------------------

def test_payload_limits_are_inclusive_and_say_so():
    from gamesession.protocol.clientcore import MAX_DATAGRAM, MAX_MESSAGE, PayloadTooLarge
    server = FakeServer()
    server.core.frame_received(server.welcome())
    core = server.core
    core.data_message(bytes(MAX_MESSAGE))
    core.datagram(Kind.DATA, bytes(MAX_DATAGRAM))
    with pytest.raises(PayloadTooLarge) as info:
        core.data_message(bytes(MAX_MESSAGE + 1))
    assert str(info.value) == "message of {} bytes is over the {}-byte limit (MAX_MESSAGE)".format(
        MAX_MESSAGE + 1, MAX_MESSAGE)
    with pytest.raises(PayloadTooLarge) as info:
        core.datagram(Kind.DATA, bytes(MAX_DATAGRAM + 1))
    assert str(info.value) == ("datagram payload of {} bytes is over the {}-byte limit"
                               " (MAX_DATAGRAM)".format(MAX_DATAGRAM + 1, MAX_DATAGRAM))
    theirs = DatagramChannel(b"T" * 8, server.keys.udp_s2c, server.keys.udp_c2s)
    packet = core.datagram(Kind.KEEPALIVE)  # the payload defaults to nothing
    counter = int.from_bytes(packet[8:16], "little")
    assert theirs.open(counter, packet[16:])[:2] == (Kind.KEEPALIVE, b"")


def test_errors_keep_their_code_and_reason_as_args():
    assert LoginFailed(409, "taken").args == (409, "taken")
    error = ProtocolError(ErrorCode.BAD_FIELD, "user: too long")
    assert error.args == (ErrorCode.BAD_FIELD, "user: too long")
    assert (error.code, error.reason) == (ErrorCode.BAD_FIELD, "user: too long")


def test_datagram_edges():
    from gamesession.protocol.datagram import MAX_PAYLOAD, MIN_PACKET, Drop, split_header
    with pytest.raises(Drop) as drop:
        split_header(bytes(MIN_PACKET - 1))
    assert drop.value.reason == "short"
    assert split_header(bytes(MIN_PACKET))[1:] == (0, bytes(MIN_PACKET - 16))
    key = bytes(range(32))
    channel = DatagramChannel(b"T" * 8, key, key)
    assert channel.open(0, channel.seal(Kind.KEEPALIVE)[16:]) == (Kind.KEEPALIVE, b"", True)
    channel.seal(Kind.DATA, bytes(MAX_PAYLOAD))
    with pytest.raises(ValueError) as info:
        channel.seal(Kind.DATA, bytes(MAX_PAYLOAD + 1))
    assert str(info.value) == "datagram payload over {} bytes".format(MAX_PAYLOAD)
    # A box with no kind byte at all is a bad kind, not a crash and not a PING.
    with pytest.raises(Drop) as drop:
        channel.open(5, handshake.seal(key, 5, b""))
    assert drop.value.reason == "bad_kind"
    channel.send_counter = MAX_COUNTER
    with pytest.raises(OverflowError) as info:
        channel.seal(Kind.DATA)
    assert str(info.value) == "datagram counter exhausted; log in again"


def test_udp_counters_add_up_and_an_answered_ping_takes_no_empty_pong():
    harness = Harness()
    connection, session = harness.logged_in("alice", "")
    core = connection.core
    registry = harness.registry
    for _ in range(2):
        registry.datagram_received(bytes(40), CLIENT_UDP)
    registry.datagram_received(core.datagram(Kind.KEEPALIVE), CLIENT_UDP)
    assert harness.stats.dropped["unknown_token"] == 2
    assert harness.stats.udp_in_packets == 3
    assert harness.stats.udp_in_bytes == 80 + len(core.datagram(Kind.KEEPALIVE))
    harness.clock.advance(registry.keepalive)
    registry.sweep()
    [(packet, _)] = harness.udp_sent()
    _, ping_id = core.datagram_received(packet)
    registry.datagram_received(core.datagram(Kind.PONG, ping_id), CLIENT_UDP)
    assert harness.stats.rtt.count == 1 and session.ping_id is None
    registry.datagram_received(core.datagram(Kind.PONG, b""), CLIENT_UDP)
    assert harness.stats.rtt.count == 1


def test_a_failing_application_datagram_handler_is_logged_by_name():
    harness = Harness(application=RaisingApp())
    with capturedLogs():
        connection, _ = harness.logged_in("alice", "")
    with capturedLogs() as events:
        harness.registry.datagram_received(connection.core.datagram(Kind.DATA, b"x"), CLIENT_UDP)
    [event] = [e for e in events if e.get("log_failure") is not None]
    assert event["log_format"] == "application {method} failed"
    assert event["method"] == "datagram_received"


def test_refusals_say_why_and_logins_are_counted():
    harness = Harness(duplicate_login="reject", max_sessions=2)
    harness.logged_in("alice", "")
    harness.logged_in("bob", "")
    assert harness.stats.logins["ok"] == 2
    [again] = harness.connect().attempt_login("alice", "")
    assert (again.code, again.reason) == (ErrorCode.ALREADY_LOGGED_IN,
                                          "user alice is already logged in")
    [full] = harness.connect().attempt_login("carol", "")
    assert (full.code, full.reason) == (ErrorCode.SERVER_FULL, "server full")


def test_an_ended_session_logs_its_avatar_out():
    harness = Harness()
    logged_out = []
    harness.factory.portal.realm.requestAvatar = (
        lambda avatar_id, mind, *interfaces: (interfaces[0], object(),
                                              lambda: logged_out.append(avatar_id)))
    connection, session = harness.logged_in("alice", "")
    with capturedLogs() as events:
        connection.send(connection.core.logout())
    assert logged_out == ["alice"] and session.ended == "logout"
    assert not [e for e in events if e.get("log_failure") is not None]


def test_the_stream_cipher_counts_one_per_frame_from_zero():
    key = bytes(range(32))
    assert StreamCipher(key).counter == 0
    sender = StreamCipher(key, 5)
    assert [sender.seal(b"x"), sender.seal(b"y")] == [handshake.seal(key, 5, b"x"),
                                                      handshake.seal(key, 6, b"y")]
    assert sender.counter == 7


def test_every_roam_is_counted():
    harness = Harness()
    connection, session = harness.logged_in("alice", "")
    for port in (40000, 40001, 40002):
        harness.registry.datagram_received(connection.core.datagram(Kind.KEEPALIVE),
                                           ("198.51.100.7", port))
    assert session.address == ("198.51.100.7", 40002) and harness.stats.roams == 2
