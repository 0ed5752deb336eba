"""Session suspension and resume on the server, through the in-memory Harness (task.Clock)."""

import attrs
import pytest
from twisted.internet import defer

from gamesession.protocol import resume, wire
from gamesession.protocol.clientcore import LoginFailed, MessageData, Pong, Resumed, ResumeRefused, Welcome
from gamesession.protocol.datagram import Drop, Kind
from gamesession.protocol.wire import ErrorCode
from gamesession.server.limits import Limits, LoginAttempts
from gamesession.server.resume import ResumeRefused as ServerResumeRefused

from fakes import Harness, RecordingApp

USERS = {"alice": "pw", "bob": "pw2"}


class Recorder(RecordingApp):
    """RecordingApp that is also told about suspensions and resumes."""

    def session_suspended(self, session):
        self.events.append(("suspended", session.user))

    def session_resumed(self, session):
        self.events.append(("resumed", session.user))


def make(grace=20.0, **kw):
    app = Recorder()
    harness = Harness(users=USERS, application=app, resume_grace=grace, **kw)
    return harness, app


def udp_ping(harness, core, session, ping_id=b"12345678", address=("198.51.100.7", 5555)):
    """Send a PING over UDP from ``core``; returns the PONG payloads that came back."""
    harness.registry.datagram_received(core.datagram(Kind.PING, ping_id), address)
    pongs = []
    for packet, _ in harness.udp_sent():
        kind, payload = core.datagram_received(packet)
        if kind == Kind.PONG:
            pongs.append(payload)
    return pongs


def test_welcome_carries_a_ticket_and_a_dropped_connection_suspends():
    harness, app = make()
    connection, session = harness.logged_in()
    ticket = connection.core.ticket
    assert len(ticket.resume_id) == 16 and len(ticket.secret) == 32 and ticket.grace == 20.0
    assert ticket.resume_id != session.token and ticket.secret not in (session.token,)
    connection.lose()
    assert session.suspended and not session.ended
    assert harness.registry.by_token[session.token] is session
    assert connection.protocol not in harness.registry.by_control
    assert harness.stats.suspended == 1
    assert app.events[-1] == ("suspended", "alice")


def test_resume_moves_the_session_with_a_new_token_and_ticket():
    harness, app = make()
    connection, session = harness.logged_in()
    core = connection.core
    old_token, old_ticket = session.token, core.ticket
    connection.lose()
    harness.clock.advance(3)
    second = harness.connect(port=40001)
    [event] = second.resume(core)
    assert isinstance(event, Resumed)
    assert harness.registry.by_user["alice"] is session and not session.suspended
    assert session.token == event.welcome.token != old_token
    assert old_token not in harness.registry.by_token
    assert harness.registry.by_control[second.protocol] is session
    assert event.welcome.ticket.resume_id != old_ticket.resume_id
    assert event.welcome.ticket.secret != old_ticket.secret
    assert harness.stats.logins["ok"] == 1 and harness.stats.resumes["ok"] == 1
    assert harness.stats.suspended == 0
    assert app.events == [("started", "alice"), ("suspended", "alice"), ("resumed", "alice")]
    # The session goes on: TCP data both ways, then a logout ends it once.
    second.send(core.data_message(b"hi"))
    assert [e.payload for e in second.pump() if isinstance(e, MessageData)] == [b"hi"]
    second.send(core.logout())
    assert session.ended == "logout" and app.events[-1] == ("ended", "alice", "logout")


def test_old_token_is_dead_after_the_switch_and_the_new_channel_works():
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    assert udp_ping(harness, core, session) == [b"12345678"]
    old_channel = core.channel
    connection.lose()
    harness.connect(port=40001).resume(core)
    assert core.previous_channel is old_channel and core.channel is not old_channel
    # A datagram sealed under the old token and keys is dropped.
    harness.registry.datagram_received(old_channel.seal(Kind.PING, b"oldtoken"),
                                       ("198.51.100.7", 5555))
    assert harness.udp_sent() == [] and harness.stats.dropped["unknown_token"] == 1
    # The new channel starts at counter 0 under the new keys and is answered.
    assert core.channel.send_counter == 0
    assert udp_ping(harness, core, session, b"newtoken") == [b"newtoken"]
    assert core.previous_channel is None


def test_wrong_secret_is_refused_like_an_unknown_ticket():
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    real = core.welcome
    core.welcome = attrs.evolve(real, ticket=attrs.evolve(real.ticket, secret=bytes(32)))
    attempt = harness.connect(port=40001)
    with pytest.raises(ResumeRefused) as info:
        attempt.resume(core)
    assert info.value.code == ErrorCode.RESUME_REFUSED == 410
    assert info.value.refused == "unknown" and not info.value.final
    assert attempt.closed and session.suspended
    assert harness.stats.resumes["resume_unknown"] == 1
    # The right secret still works.
    core.welcome = real
    [event] = harness.connect(port=40002).resume(core)
    assert isinstance(event, Resumed)


def test_unknown_ticket_is_refused():
    harness, _ = make()
    connection, _ = harness.logged_in()
    core = connection.core
    core.welcome = attrs.evolve(core.welcome, ticket=attrs.evolve(core.ticket, resume_id=bytes(16)))
    with pytest.raises(ResumeRefused) as info:
        harness.connect(port=40001).resume(core)
    assert info.value.refused == "unknown"


def test_grace_timer_ends_the_session_and_the_ticket_expires():
    harness, app = make(grace=5.0, session_timeout=30.0, keepalive=2.0)
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    harness.clock.advance(4.9)
    assert session.suspended and not session.ended
    harness.clock.advance(0.2)
    assert session.ended == "disconnected" and not session.suspended
    assert app.events[-1] == ("ended", "alice", "disconnected")
    assert "alice" not in harness.registry.by_user and harness.stats.suspended == 0
    with pytest.raises(ResumeRefused) as info:
        harness.connect(port=40001).resume(core)
    assert info.value.refused == "expired" and not info.value.final
    # Falling back to a login works: a new session.
    [welcome] = harness.connect(port=40002).resume(core, resume_session=False)
    assert isinstance(welcome, Welcome) and harness.stats.logins["ok"] == 2


def test_a_ticket_resumes_once():
    harness, _ = make()
    connection, _ = harness.logged_in()
    core = connection.core
    used = core.welcome
    connection.lose()
    harness.connect(port=40001).resume(core)
    fresh = core.welcome
    core.welcome = used
    with pytest.raises(ResumeRefused) as info:
        harness.connect(port=40002).resume(core)
    assert info.value.refused == "used"
    core.welcome = fresh
    assert isinstance(harness.connect(port=40003).resume(core)[0], Resumed)


@pytest.mark.parametrize("how, reason", [("logout", "logout"), ("kick", "kicked"),
                                         ("shutdown", "shutdown")])
def test_ended_sessions_are_never_resumable(how, reason):
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    if how == "logout":
        connection.send(core.logout())
    elif how == "kick":
        connection.lose()  # kicked while suspended: the client hears it over UDP
        session.kick()
    else:
        harness.registry.shutdown()
    assert session.ended == reason
    with pytest.raises(ResumeRefused) as info:
        harness.connect(port=40001).resume(core)
    assert info.value.refused == "ended" and info.value.ended == reason and info.value.final
    assert harness.stats.resumes["resume_ended"] == 1


def test_kick_while_suspended_says_so_over_udp():
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    udp_ping(harness, core, session)
    connection.lose()
    session.kick()
    [(packet, _)] = harness.udp_sent()
    assert core.datagram_received(packet) == (Kind.DISCONNECT, b"kicked")


def test_the_old_sessions_disconnect_after_a_fallback_login_is_superseded():
    # The fallback login replaces the old session, whose DISCONNECT "replaced"
    # may arrive after the new welcome: it must not end the new session.
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    udp_ping(harness, core, session)
    connection.lose()
    [welcome] = harness.connect().resume(core, resume_session=False)
    assert session.ended == "replaced"
    [(packet, _)] = harness.udp_sent()
    with pytest.raises(Drop) as info:
        core.datagram_received(packet)
    assert info.value.reason == "superseded"


def test_replayed_resume_handshake_is_refused():
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    recorded = []
    second = harness.connect(port=40001)
    original = second.send
    second.send = lambda payload: (recorded.append(payload), original(payload))[1]
    second.resume(core)
    token = session.token
    second.lose()
    assert session.suspended
    # An attacker replays the recorded hello and sealed resume on a connection of its own.
    replay = harness.connect(host="203.0.113.9", port=40002)
    hello, request = recorded
    replay.send(hello)
    [challenge] = replay.received()
    assert wire.decode(challenge)["type"] == "challenge"
    replay.send(request)
    [frame] = replay.received()
    assert wire.decode(frame)["type"] == "sealed"  # an error under keys the replayer lacks
    assert harness.stats.protocol_errors["bad_box"] == 1
    assert replay.closed and session.suspended and session.token == token
    # Even a correct proof is bound to its handshake's public keys.
    publics = (b"a" * 32, b"b" * 32, harness.factory.server_public)
    with pytest.raises(ServerResumeRefused):
        harness.registry.resumes.resume(core.ticket.resume_id,
                                        resume.proof(core.ticket.secret, b"c" * 32, b"b" * 32,
                                                     harness.factory.server_public),
                                        publics, object(), None)


def test_udp_keeps_working_while_suspended_and_silence_still_times_out():
    harness, app = make(grace=60.0, session_timeout=10.0, keepalive=2.0)
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    for _ in range(5):
        harness.clock.advance(4)
        harness.registry.sweep()
        assert udp_ping(harness, core, session) == [b"12345678"]
    assert session.suspended and not session.ended
    harness.clock.advance(10)
    harness.registry.sweep()
    assert session.ended == "timeout"
    with pytest.raises(ResumeRefused) as info:
        harness.connect(port=40001).resume(core)
    assert info.value.ended == "timeout" and not info.value.final


def test_messages_sent_while_suspended_arrive_after_the_resume_in_order():
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    session.send_message(b"one")
    session.send_message(b"two")
    events = harness.connect(port=40001).resume(core)
    assert isinstance(events[0], Resumed)
    assert [e.payload for e in events[1:]] == [b"one", b"two"]


def test_control_messages_for_a_suspended_session_wait_too():
    # Room events go through control.send_message (a dict); they wait in the same queue.
    harness, _ = make()
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    session.control.send_message({"type": "data", "data": wire.b64(b"event")})
    session.send_message(b"after")
    events = harness.connect().resume(core)
    assert [e.payload for e in events[1:]] == [b"event", b"after"]


def test_the_suspended_queue_is_bounded():
    harness, _ = make()
    harness.registry.resumes.max_queued_bytes = 10
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    for payload in (b"123456", b"7890", b"overflow"):
        session.send_message(payload)
    events = harness.connect(port=40001).resume(core)
    assert [e.payload for e in events[1:]] == [b"123456", b"7890"]


def test_resume_takes_over_a_connection_the_client_gave_up_on():
    harness, app = make()
    connection, session = harness.logged_in()
    core = connection.core
    second = harness.connect(port=40001)
    [event] = second.resume(core)
    assert isinstance(event, Resumed)
    assert connection.closed and not session.ended
    assert connection.received() == []  # nothing more goes to the old connection
    connection.lose()  # its close arrives later: the session goes on
    assert not session.ended and not session.suspended
    assert harness.registry.by_control == {second.protocol: session}
    assert app.events == [("started", "alice"), ("resumed", "alice")]


def test_duplicate_login_kick_replaces_a_suspended_session():
    harness, app = make(duplicate_login="kick")
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    _, newer = harness.logged_in(port=40001)
    assert session.ended == "replaced" and newer is harness.registry.by_user["alice"]
    assert harness.stats.suspended == 0
    with pytest.raises(ResumeRefused) as info:
        harness.connect(port=40002).resume(core)
    assert info.value.ended == "replaced" and info.value.final


def test_duplicate_login_reject_keeps_the_suspended_session_for_its_resume():
    harness, _ = make(duplicate_login="reject")
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    with pytest.raises(LoginFailed) as info:
        harness.connect(port=40001).login("alice", "pw")
    assert info.value.code == ErrorCode.ALREADY_LOGGED_IN
    assert isinstance(harness.connect(port=40002).resume(core)[0], Resumed)
    assert harness.registry.by_user["alice"] is session


class SlowChecker:
    """A cred checker whose answers wait until the test releases them."""

    from twisted.cred.credentials import IUsernamePassword
    credentialInterfaces = (IUsernamePassword,)

    def __init__(self):
        self.waiting = []

    def requestAvatarId(self, credentials):
        d = defer.Deferred()
        self.waiting.append((credentials.username, d))
        return d


def test_a_login_decided_after_a_resume_replaces_it_under_kick():
    # (Under reject the login is refused before its password check: the
    # suspended session holds the user, see the test above.)
    harness, _ = make(duplicate_login="kick")
    checker = SlowChecker()
    harness.factory.portal.registerChecker(checker)
    first = harness.connect()
    first.send(first.handshake("alice", "pw"))
    checker.waiting.pop()[1].callback(b"alice")
    first.pump()
    session = harness.registry.by_user["alice"]
    core = first.core
    first.lose()
    # A new login starts, the resume completes while the password check runs, then the check ends.
    login = harness.connect(port=40001)
    login.send(login.handshake("alice", "pw"))
    resumed = harness.connect(port=40002)
    assert isinstance(resumed.resume(core)[0], Resumed)
    checker.waiting.pop()[1].callback(b"alice")
    assert isinstance(login.pump()[0], Welcome)
    assert session.ended == "replaced"
    assert [e.reason for e in resumed.pump()] == ["replaced"]


def test_failed_resumes_go_through_the_login_backoff():
    # The 3rd failure starts the wait (--max-login-failures 3).
    limits = Limits(attempts=LoginAttempts(free=3, backoff=10.0, backoff_max=60.0))
    harness, _ = make(limits=limits)
    connection, _ = harness.logged_in()
    core = connection.core
    real = core.welcome
    core.welcome = attrs.evolve(real, ticket=attrs.evolve(real.ticket, secret=bytes(32)))
    for port in (40001, 40002, 40003):
        with pytest.raises(ResumeRefused):
            harness.connect(port=port).resume(core)
    core.welcome = real
    with pytest.raises(LoginFailed) as info:
        harness.connect(port=40004).resume(core)
    assert info.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert harness.stats.resumes["too_many_attempts"] == 1
    harness.clock.advance(11)
    assert isinstance(harness.connect(port=40005).resume(core)[0], Resumed)


def test_suspended_sessions_count_against_max_sessions():
    harness, _ = make(max_sessions=1)
    connection, _ = harness.logged_in()
    connection.lose()
    with pytest.raises(LoginFailed) as info:
        harness.connect(port=40001).login("bob", "pw2")
    assert info.value.code == ErrorCode.SERVER_FULL


def test_at_most_one_suspended_session_per_user():
    harness, _ = make()
    for port in (40000, 40001, 40002):
        connection, _ = harness.logged_in(port=port)
        connection.lose()
    assert harness.stats.suspended == 1 == harness.registry.resumes.suspended_count
    assert len(harness.registry.resumes) == 1 and len(harness.registry) == 1


def test_tombstones_are_bounded():
    harness, _ = make()
    harness.registry.resumes.max_tombstones = 3
    for port in range(40000, 40010):
        connection, _ = harness.logged_in(port=port)
        connection.send(connection.core.logout())
    assert len(harness.registry.resumes.tombstones) == 3


def test_resume_off_ends_dropped_sessions_and_refuses_resumes():
    harness, app = make(grace=0.0)
    connection, session = harness.logged_in()
    core = connection.core
    assert core.ticket is None
    connection.lose()
    assert session.ended == "disconnected"
    with pytest.raises(ValueError):
        core.reconnect()
    # A client that presents a ticket anyway is told resume is off.
    core.welcome = attrs.evolve(core.welcome, ticket=resume.Ticket(bytes(16), bytes(32), 20.0))
    with pytest.raises(ResumeRefused) as info:
        harness.connect(port=40001).resume(core)
    assert info.value.refused == "off"


def test_tcp_ping_is_answered_with_its_id():
    harness, _ = make()
    connection, _ = harness.logged_in()
    connection.send(connection.core.tcp_ping(77))
    assert connection.pump() == [Pong(77)]


def test_resume_before_login_state_is_misplaced():
    harness, _ = make()
    connection, _ = harness.logged_in()
    connection.send(connection.core.seal_message(
        resume.resume_message(bytes(16), bytes(32))))
    with pytest.raises(LoginFailed) as info:
        connection.pump()
    assert info.value.code == ErrorCode.UNEXPECTED


def test_malformed_resume_is_a_bad_field():
    harness, _ = make()
    connection = harness.connect()
    connection.core = None
    from gamesession.protocol.clientcore import ClientCore
    from fakes import SERVER_KEY
    core = ClientCore(bytes(SERVER_KEY.public_key), "alice", "pw")
    connection.core = core
    connection.send(core.hello())
    [challenge] = connection.received()
    core.frame_received(challenge)
    core.sender.counter = 0  # that login was never sent
    connection.send(core.seal_message({"type": "resume", "resume_id": "AAAA", "proof": 5}))
    with pytest.raises(LoginFailed) as info:
        connection.pump()
    assert info.value.code == ErrorCode.BAD_FIELD


def test_a_message_made_while_reconnecting_is_sealed_for_the_new_connection():
    from gamesession.protocol.clientcore import Unsent
    harness, app = make()
    connection, session = harness.logged_in()
    core = connection.core
    connection.lose()
    core.connection_lost()
    unsent = core.data_message(b"made while away")
    assert isinstance(unsent, Unsent)
    second = harness.connect()
    second.resume(core)
    second.send(core.seal_message(unsent.message))
    assert app.events[-1] == ("message", "alice", b"made while away")


def test_a_suspended_session_still_counts_for_its_address_and_moves_with_a_resume():
    harness, _ = make(max_sessions_per_address=1)
    connection, session = harness.logged_in(host="198.51.100.7")
    core = connection.core
    connection.lose()
    assert harness.registry.by_host == {"198.51.100.7": 1}
    with pytest.raises(LoginFailed) as info:
        harness.connect(host="198.51.100.7").login("bob", "pw2")
    assert info.value.code == ErrorCode.SERVER_FULL
    harness.connect(host="203.0.113.5").resume(core)  # a network change: a new address
    assert harness.registry.by_host == {"203.0.113.5": 1}
    assert isinstance(harness.connect(host="198.51.100.7").login("bob", "pw2")[0], Welcome)
    session.kick()
    harness.clock.advance(30)
    assert "203.0.113.5" not in harness.registry.by_host


# -- edges the mutation run found unpinned (docs/testing.md) ----------------------------------

def test_the_resume_codec_says_what_is_wrong():
    from gamesession.protocol.wire import ProtocolError
    ticket = resume.Ticket(bytes(range(16)), bytes(32), 20.0)
    assert repr(ticket) == "<Ticket 000102030405060708090a0b0c0d0e0f grace=20>"  # never the secret
    with pytest.raises(ValueError) as info:
        resume.proof(bytes(31), bytes(32), bytes(32), bytes(32))
    assert str(info.value) == "a resume secret is 32 bytes"
    for field, size in (("resume_id", resume.RESUME_ID_SIZE), ("proof", resume.PROOF_SIZE)):
        message = resume.resume_message(bytes(16), bytes(32))
        message[field] = wire.b64(bytes(size + 1))
        with pytest.raises(ProtocolError) as info:
            resume.parse_resume(message)
        assert info.value.reason == "{} must be {} bytes".format(field, size)
    reasons = {
        resume.REFUSED_UNKNOWN: "no session to resume",
        resume.REFUSED_EXPIRED: "the session ended: its resume grace ran out",
        resume.REFUSED_USED: "this resume ticket was already used",
        resume.REFUSED_ENDED: "the session ended (kicked)",
        resume.REFUSED_OFF: "this server does not resume sessions",
    }
    for refused, reason in reasons.items():
        message = resume.refusal(refused, "kicked" if refused == resume.REFUSED_ENDED else None)
        assert (message["code"], message["reason"], message["refused"]) == (410, reason, refused)


def test_the_client_reads_a_resume_refusal_defensively():
    from gamesession.protocol.clientcore import ClientCore
    failure = ClientCore._failure({"type": "error", "code": 410, "reason": "gone",
                                   "refused": 5, "ended": 7})
    assert isinstance(failure, ResumeRefused)
    assert (failure.code, failure.reason, failure.refused, failure.ended) == (410, "gone", "unknown", None)
    assert failure.args == (410, "gone") and not failure.final
    failure = ClientCore._failure({"type": "error", "code": 410, "reason": "gone",
                                   "refused": "ended", "ended": "kicked"})
    assert (failure.refused, failure.ended, failure.final) == ("ended", "kicked", True)


def test_reconnecting_holds_session_frames_and_needs_a_ticket_to_resume():
    from fakes import SERVER_KEY
    from gamesession.protocol.clientcore import ClientCore, Unsent
    core = ClientCore(bytes(SERVER_KEY.public_key), "alice", "pw")
    with pytest.raises(ValueError) as info:
        core.reconnect()
    assert str(info.value) == "no resume ticket: the server gave none"
    core.established = True
    core.reconnect(resume_session=False)
    assert core.session_frame({"type": "data"}) == Unsent({"type": "data"})


def test_a_ticket_is_read_within_its_bounds():
    from gamesession.protocol.wire import ProtocolError
    ticket = resume.Ticket(bytes(16), bytes(32), 20.0)
    good = resume.ticket_fields(ticket)
    assert resume.parse_ticket({}) is None
    for grace in (0.5, 86400):
        assert resume.parse_ticket(dict(good, resume_grace=grace)).grace == grace
    for grace in (0, -1, 86400.5, "20", True):
        with pytest.raises(ProtocolError) as info:
            resume.parse_ticket(dict(good, resume_grace=grace))
        assert (info.value.code, info.value.reason) == (
            ErrorCode.BAD_FIELD, "resume_grace must be a positive number of seconds")
    for field, size in (("resume_id", 16), ("resume_secret", 32)):
        with pytest.raises(ProtocolError) as info:
            resume.parse_ticket(dict(good, **{field: wire.b64(bytes(size + 1))}))
        assert info.value.reason == "{} must be {} bytes".format(field, size)


def test_a_resume_is_hearing_from_the_client_and_forgets_the_old_ping():
    harness, _ = make(grace=20.0)
    connection, session = harness.logged_in()
    core = connection.core
    harness.registry.datagram_received(core.datagram(Kind.KEEPALIVE, b""), ("198.51.100.7", 5555))
    connection.lose()
    harness.clock.advance(15.0)  # suspended for most of the grace, silent all along
    harness.connect().resume(core)
    # The resume counts as hearing from the client: the session timeout runs from it.
    assert session.last_seen == harness.clock.seconds()
    harness.clock.advance(harness.registry.session_timeout - 1.0)
    harness.registry.sweep()
    assert session.ended is None
    harness.clock.advance(2.0)
    harness.registry.sweep()
    assert session.ended == "timeout"


def test_a_resume_onto_an_address_adds_to_its_count():
    harness, _ = make(max_sessions_per_address=2)
    connection, session = harness.logged_in(host="198.51.100.7")
    harness.logged_in("bob", "pw2", host="203.0.113.5")
    core = connection.core
    connection.lose()
    harness.connect(host="203.0.113.5").resume(core)  # alice moves to bob's address
    assert harness.registry.by_host == {"203.0.113.5": 2}
