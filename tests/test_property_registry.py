"""A stateful property test of the registry, driven through the real login protocol.

Random sequences of logins (including duplicates and a full server), logouts
over TCP and UDP, dropped connections, kicks, bad input, idle connections,
keepalives and the passing of time keep ``by_token``/``by_user``/``by_control``
consistent with a model, and every session ends exactly once with the reason
the model expects.
"""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gamesession.protocol.clientcore import LoginFailed, SessionEnded, Welcome
from gamesession.protocol.datagram import Kind
from gamesession.protocol.wire import ErrorCode

from fakes import Harness, RecordingApp, check_registry

pytestmark = pytest.mark.timeout(600)

USERS = ["ann", "ben", "cat", "dan"]
MAX_SESSIONS = 3
SESSION_TIMEOUT = 5.0
LOGIN_TIMEOUT = 8.0


class RegistryMachine(RuleBasedStateMachine):
    duplicate_login = "kick"

    def __init__(self):
        super().__init__()
        self.server = Harness(application=RecordingApp(), duplicate_login=self.duplicate_login,
                              max_sessions=MAX_SESSIONS, session_timeout=SESSION_TIMEOUT,
                              keepalive=1.0, login_timeout=LOGIN_TIMEOUT)
        self.registry = self.server.registry
        self.live = {}  # user -> [connection, last authenticated traffic]
        self.expected_ends = []  # (user, reason) in order
        self.idle = []

    @property
    def now(self):
        return self.server.clock.seconds()

    def _ended(self, user, reason):
        del self.live[user]
        self.expected_ends.append((user, reason))

    # -- rules -----------------------------------------------------------------

    @rule(user=st.sampled_from(USERS))
    def login(self, user):
        conn = self.server.connect()
        events = conn.attempt_login(user)
        if user in self.live and self.duplicate_login == "reject":
            assert [e.code for e in events if isinstance(e, LoginFailed)] == [ErrorCode.ALREADY_LOGGED_IN]
            return
        if user not in self.live and len(self.live) >= MAX_SESSIONS:
            assert [e.code for e in events if isinstance(e, LoginFailed)] == [ErrorCode.SERVER_FULL]
            return
        assert any(isinstance(e, Welcome) for e in events), events
        if user in self.live:
            old = self.live[user][0]
            assert [e.reason for e in old.server_events() if isinstance(e, SessionEnded)] == ["replaced"]
            self._ended(user, "replaced")
        self.live[user] = [conn, self.now]

    @precondition(lambda self: self.live)
    @rule(data=st.data(), how=st.sampled_from(["logout", "udp_disconnect", "lose", "kick", "garbage"]))
    def end(self, data, how):
        user = data.draw(st.sampled_from(sorted(self.live)))
        conn = self.live[user][0]
        if how == "logout":
            conn.send(conn.core.logout())
            reason = "logout"
        elif how == "udp_disconnect":
            self.registry.datagram_received(conn.core.datagram(Kind.DISCONNECT), ("192.0.2.9", 1))
            reason = "logout"
        elif how == "lose":
            conn.lose()
            reason = "disconnected"
        elif how == "kick":
            self.registry.by_user[user].kick()
            reason = "kicked"
        else:
            conn.send(b"\xff not json")
            reason = "disconnected"
        self._ended(user, reason)
        assert conn.closed or how == "lose"

    @precondition(lambda self: self.live)
    @rule(data=st.data(), kind=st.sampled_from([Kind.KEEPALIVE, Kind.PING, Kind.DATA, Kind.PONG]))
    def datagram(self, data, kind):
        user = data.draw(st.sampled_from(sorted(self.live)))
        conn = self.live[user][0]
        self.registry.datagram_received(conn.core.datagram(kind, b"x"), ("192.0.2.9", 1))
        self.live[user][1] = self.now

    @rule(packet=st.binary(max_size=80))
    def forged_datagram(self, packet):
        self.registry.datagram_received(packet, ("198.51.100.1", 2))

    @rule()
    def idle_connection(self):
        self.idle.append((self.server.connect(), self.now))

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.5, 4.9, 5.0, 9.0]))
    def time_passes(self, seconds):
        self.server.clock.advance(seconds)
        self.registry.sweep()
        for user, (conn, last) in sorted(self.live.items()):
            if self.now - last >= SESSION_TIMEOUT:
                self._ended(user, "timeout")
        for conn, opened in self.idle:
            if self.now - opened >= LOGIN_TIMEOUT:
                assert conn.closed
        self.idle = [(c, t) for c, t in self.idle if not c.closed]

    @rule()
    def shutdown(self):
        self.registry.shutdown()
        for user in sorted(self.live):
            self._ended(user, "shutdown")

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def indexes_agree_with_the_model(self):
        check_registry(self.registry)
        assert set(self.registry.by_user) == set(self.live)
        for user, (conn, _) in self.live.items():
            assert self.registry.by_control[conn.protocol].user == user

    @invariant()
    def every_session_ended_once_for_the_expected_reason(self):
        ended = [(e[1], e[2]) for e in self.server.app.events if e[0] == "ended"]
        assert sorted(ended) == sorted(self.expected_ends)
        stats = self.server.stats
        assert stats.logins["ok"] - sum(stats.logouts.values()) == len(self.registry)
        assert stats.protocol_errors["internal"] == 0


class RejectDuplicatesMachine(RegistryMachine):
    duplicate_login = "reject"


SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TestRegistryKick = RegistryMachine.TestCase
TestRegistryKick.settings = SETTINGS
TestRegistryReject = RejectDuplicatesMachine.TestCase
TestRegistryReject.settings = SETTINGS
