"""The limits: token bucket, pending logins, login backoff, send buffer, options."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python import usage

from gamesession.server import limits as L
from gamesession.protocol.datagram import Kind
from gamesession.server.tap import Options
from gamesession.protocol.wire import ErrorCode

from fakes import Harness, RecordingApp, error_codes, session_ends

pytestmark = pytest.mark.timeout(60)


# -- token bucket ------------------------------------------------------------------

def test_bucket_allows_burst_then_rate():
    bucket = L.TokenBucket(rate=10.0, burst=5.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(100.125)  # 0.125 s at 10/s: one token and a bit
    assert not bucket.take(100.125)
    # A long silence refills only up to the burst.
    assert sum(bucket.take(1000.0) for _ in range(20)) == 5


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 1000), burst=st.floats(1, 100),
       gaps=st.lists(st.floats(0, 2), max_size=300))
def test_bucket_never_allows_more_than_rate_times_time_plus_burst(rate, burst, gaps):
    bucket = L.TokenBucket(rate, burst, 0.0)
    now = 0.0
    taken = 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
        assert taken <= burst + rate * now + 1e-6
        assert 0.0 <= bucket.tokens <= burst


# -- pending logins -------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.sampled_from("abcd")), max_size=200))
def test_pending_counts_match_a_model(ops):
    pending = L.PendingLogins(max_total=6, max_per_address=2)
    model = []
    for admit, host in ops:
        if admit:
            refused = pending.admit(host)
            if model.count(host) >= 2:
                assert refused == "pending_per_address"
            elif len(model) >= 6:
                assert refused == "pending_total"
            else:
                assert refused is None
                model.append(host)
        elif host in model:
            pending.release(host)
            model.remove(host)
        assert pending.total == len(model)
        assert pending.by_host == {h: model.count(h) for h in set(model)}


def test_pending_limits_abort_before_any_byte():
    server = Harness(application=RecordingApp(), limits=L.Limits(pending=L.PendingLogins(3, 2)))
    a1, a2, a3 = (server.connect("192.0.2.1") for _ in range(3))
    assert not a1.closed and not a2.closed
    assert a3.transport.disconnected and a3.transport.value() == b""
    b1 = server.connect("192.0.2.2")
    assert not b1.closed
    a2.attempt_login("alice")  # being logged in: no longer pending
    b1.attempt_login("bob")
    c1, c2 = server.connect("192.0.2.3"), server.connect("192.0.2.3")
    c3 = server.connect("192.0.2.4")  # total reached by idlers: the oldest idler goes
    assert a1.transport.disconnected and a1.transport.value() == b""
    assert not c3.closed
    assert server.stats.limited == {"pending_per_address": 1, "pending_evicted": 1}
    assert server.stats.tcp_pending_login == 3
    # A lost connection frees its slot.
    c1.lose()
    assert server.factory.limits.pending.total == 2
    assert not server.connect("192.0.2.1").closed
    assert not c2.closed and not c3.closed


def test_pending_total_refuses_when_no_one_is_idle():
    """Connections whose password is being checked are never pushed out."""
    server = Harness(application=RecordingApp(), limits=L.Limits(pending=L.PendingLogins(2, 2)))
    a, b = server.connect("192.0.2.1"), server.connect("192.0.2.2")
    for conn in (a, b):
        conn.protocol.state = "checking"
    c = server.connect("192.0.2.3")
    assert c.transport.disconnected and not a.closed and not b.closed
    assert server.stats.limited == {"pending_total": 1}


def test_login_timeout_frees_the_pending_slot():
    server = Harness(application=RecordingApp(), limits=L.Limits(pending=L.PendingLogins(10, 1)),
                     login_timeout=5)
    idle = server.connect()
    server.clock.advance(5)
    assert idle.closed
    assert server.factory.limits.pending.total == 0
    assert not server.connect().closed


# -- login attempts --------------------------------------------------------------------

def test_backoff_after_free_failures_doubles_and_caps():
    """After N failures the next attempt waits: the Nth failure starts the backoff."""
    attempts = L.LoginAttempts(free=3, backoff=1.0, backoff_max=5.0)
    now = 0.0
    for _ in range(2):
        attempts.failed("h", now)
        assert attempts.wait("h", now) == 0
    waits = []
    for _ in range(5):
        attempts.failed("h", now)
        waits.append(attempts.wait("h", now))
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert attempts.wait("h", now + 5.0) == 0
    assert attempts.wait("other", now) == 0
    attempts.succeeded("h")
    assert len(attempts) == 0


def test_a_success_forgives_only_the_user_who_logged_in():
    """Finding 13.1: logging in to one's own account must not reset the backoff."""
    attempts = L.LoginAttempts(free=3, backoff=1.0, backoff_max=60.0)
    attempts.failed("h", 0.0, "victim")
    attempts.failed("h", 0.0, "victim")
    attempts.failed("h", 0.0, "mine")
    attempts.succeeded("h", "mine")  # forgives the one "mine" failure, not the victim's
    assert attempts.wait("h", 0.0) == 0
    attempts.failed("h", 0.0, "victim")  # third failure still on record: wait
    assert attempts.wait("h", 0.0) == 1.0
    attempts.succeeded("h", "mine")
    assert attempts.wait("h", 0.0) == 1.0
    attempts.succeeded("h", "victim")  # the victim's own login clears the address
    assert len(attempts) == 0


def test_interleaving_own_logins_does_not_reset_the_backoff():
    """The attack from issue 13 finding 1, end to end on the login protocol."""
    limits = L.Limits(attempts=L.LoginAttempts(free=3, backoff=5.0, backoff_max=60.0))
    server = Harness(application=RecordingApp(), limits=limits, users={"victim": "secret", "mallory": "mine"})
    codes = []
    for guess in range(10):
        own = server.connect()
        own.attempt_login("mallory", "mine")
        codes += error_codes(server.connect().attempt_login("victim", "guess%d" % guess))
        own.lose()
    assert codes[:3] == [ErrorCode.AUTH_FAILED] * 3
    assert set(codes[3:]) == {ErrorCode.TOO_MANY_ATTEMPTS}
    assert server.stats.logins["auth_failed"] == 3


def test_the_429_rule_as_documented():
    """docs/protocol.md: after N failed logins the next attempt gets 429 (N=5, 1 s)."""
    server = Harness(application=RecordingApp(), limits=L.Limits(attempts=L.LoginAttempts(5, 1.0, 60.0)),
                          users={"alice": "pw"})
    codes = [error_codes(server.connect().attempt_login("alice", "wrong")) for _ in range(6)]
    assert codes == [[ErrorCode.AUTH_FAILED]] * 5 + [[ErrorCode.TOO_MANY_ATTEMPTS]]
    server.clock.advance(1.0)
    assert error_codes(server.connect().attempt_login("alice", "wrong")) == [ErrorCode.AUTH_FAILED]
    assert error_codes(server.connect().attempt_login("alice", "pw")) == [ErrorCode.TOO_MANY_ATTEMPTS]
    server.clock.advance(2.0)
    assert server.connect().attempt_login("alice", "pw")[0].user == "alice"


def test_attempt_table_expires_entries():
    attempts = L.LoginAttempts(free=0, backoff=1.0, backoff_max=2.0, expiry=30.0)
    for _ in range(5):
        attempts.failed("h", 0.0)
    assert attempts.wait("h", 1.0) == 1.0
    attempts.failed("h", 40.0)  # the old failures expired: this is the first again
    assert attempts.wait("h", 40.0) == 1.0


@pytest.mark.parametrize("backoff_max, expiry", [(1.0, 60.0), (6.0, 60.0), (60.0, 600.0)])
def test_the_attempt_table_forgets_after_ten_times_the_longest_wait_or_a_minute(
        backoff_max, expiry):
    attempts = L.LoginAttempts(backoff_max=backoff_max)
    assert attempts.expiry == expiry
    attempts.failed("h", 0.0)
    attempts.failed("h", expiry - 0.5)  # within the expiry: counted on
    assert attempts.table["h"].count == 2
    attempts.failed("h", 2 * expiry - 0.5)  # exactly the expiry after the last: forgotten
    assert attempts.table["h"].count == 1


def test_an_entry_expires_at_exactly_its_expiry():
    attempts = L.LoginAttempts(free=2, backoff=1.0, expiry=10.0)
    attempts.failed("h", 0.0)
    attempts.failed("h", 10.0)  # the first failure is forgotten at 10.0 itself
    assert attempts.wait("h", 10.0) == 0.0
    attempts.failed("h", 10.5)
    assert attempts.wait("h", 10.5) == 1.0


def test_the_attempt_table_keeps_exactly_size_addresses():
    attempts = L.LoginAttempts(free=1, size=2)
    for i, host in enumerate("abc"):
        attempts.failed(host, float(i))
    assert list(attempts.table) == ["b", "c"]


def test_releasing_an_address_with_nothing_pending_changes_nothing():
    pending = L.PendingLogins(10, 3)
    assert pending.admit("a") is None
    pending.release("b")
    pending.release("a")
    pending.release("a")
    assert pending.total == 0 and pending.by_host == {}


@settings(max_examples=100, deadline=None)
@given(hosts=st.lists(st.integers(0, 50), max_size=300))
def test_attempt_table_is_bounded_lru(hosts):
    attempts = L.LoginAttempts(free=1, size=8)
    for i, host in enumerate(hosts):
        attempts.failed(host, float(i))
        assert len(attempts) <= 8
        assert next(reversed(attempts.table)) == host  # most recent last


def test_failed_logins_get_429_then_backoff_passes():
    limits = L.Limits(attempts=L.LoginAttempts(free=2, backoff=4.0, backoff_max=60.0))
    server = Harness(application=RecordingApp(), limits=limits, users={"alice": "pw"})
    for _ in range(2):
        conn = server.connect()
        assert error_codes(conn.attempt_login("alice", "wrong")) == [ErrorCode.AUTH_FAILED]
    conn = server.connect()
    assert error_codes(conn.attempt_login("alice", "pw")) == [ErrorCode.TOO_MANY_ATTEMPTS]
    assert conn.closed
    assert server.stats.logins["too_many_attempts"] == 1
    assert server.stats.logins["auth_failed"] == 2
    # Another address is not affected.
    other = server.connect("203.0.113.9")
    assert not error_codes(other.attempt_login("alice", "pw")) and other.core.welcome is not None
    server.clock.advance(4)
    conn = server.connect()
    conn.attempt_login("alice", "pw")
    assert conn.core.welcome is not None
    assert len(limits.attempts) == 0  # success forgets the address


def test_no_limits_means_no_backoff():
    server = Harness(application=RecordingApp(), users={"alice": "pw"})
    for _ in range(20):
        conn = server.connect()
        assert error_codes(conn.attempt_login("alice", "wrong")) == [ErrorCode.AUTH_FAILED]


# -- send buffer --------------------------------------------------------------------------

def test_client_that_does_not_read_is_aborted_past_the_limit():
    server = Harness(application=RecordingApp(), limits=L.Limits(max_send_buffer=10000))
    conn = server.connect()
    conn.attempt_login("alice")
    session = server.registry.by_user["alice"]
    assert conn.transport.producer is conn.protocol
    conn.protocol.pauseProducing()  # what a full transport buffer does
    for _ in range(5):
        session.send_message(b"x" * 1000)
    assert not conn.transport.disconnected
    conn.protocol.resumeProducing()  # drained: the backlog starts again
    conn.protocol.pauseProducing()
    for _ in range(20):
        session.send_message(b"x" * 1000)
    assert conn.transport.disconnected
    assert server.stats.limited["send_buffer"] == 1
    assert "alice" not in server.registry.by_user
    conn.lose()
    assert server.stats.logouts["disconnected"] == 1


@pytest.mark.parametrize("framing", ["int16", "line"])
def test_a_full_send_buffer_does_not_stop_reading(framing):
    """The framings' receivers stop on ``self.paused``; our pause must not set it."""
    server = Harness(application=RecordingApp(), framing=framing,
                     limits=L.Limits(max_send_buffer=10**6))
    conn = server.connect()
    conn.attempt_login("alice")
    conn.protocol.pauseProducing()
    conn.send(conn.core.data_message(b"still read"))
    assert server.app.events[-1] == ("message", "alice", b"still read")
    conn.send(conn.core.logout())
    assert "alice" not in server.registry.by_user


def test_close_unregisters_the_producer_so_the_connection_can_close():
    server = Harness(application=RecordingApp())
    conn = server.connect()
    conn.attempt_login("alice")
    server.registry.end(server.registry.by_user["alice"], "kicked")
    assert session_ends(conn.server_events()) == ["kicked"]
    assert conn.closed and conn.transport.producer is None


# -- the UDP rate -------------------------------------------------------------------------

def test_datagram_rate_limit_counts_and_drops_after_authentication():
    server = Harness(application=RecordingApp(), datagram_rate=10.0, datagram_burst=3.0)
    conn = server.connect()
    conn.attempt_login("alice")
    address = ("203.0.113.5", 5000)
    for i in range(5):
        server.registry.datagram_received(conn.core.datagram(Kind.DATA, b"%d" % i), address)
    assert [e for e in server.app.events if e[0] == "datagram"] == [
        ("datagram", "alice", b"0"), ("datagram", "alice", b"1"), ("datagram", "alice", b"2")]
    assert server.stats.dropped["rate_limit"] == 2
    # Forged packets spend no tokens.
    server.clock.advance(0.1)
    for _ in range(50):
        server.registry.datagram_received(conn.core.channel.token + bytes(40), address)
    server.registry.datagram_received(conn.core.datagram(Kind.DATA, b"ok"), address)
    assert server.app.events[-1] == ("datagram", "alice", b"ok")


# -- options ----------------------------------------------------------------------------

def test_options_defaults_and_validation(tmp_path):
    options = Options()
    options.parseOptions(["--key-file", str(tmp_path / "k")])
    assert options["max-datagram-rate"] == 200.0
    assert options["max-pending"] == 1024
    assert options["max-pending-per-address"] == 32
    assert options["max-login-failures"] == 5
    assert options["max-send-buffer"] == 256 * 1024
    for bad in (["--max-pending", "0"], ["--max-datagram-rate", "-1"],
                ["--login-backoff", "10", "--login-backoff-max", "5"]):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(bad)


def test_make_service_wires_the_limits(tmp_path):
    from twisted.internet.testing import MemoryReactorClock
    from gamesession.server.tap import makeService

    options = Options()
    options.parseOptions(["--key-file", str(tmp_path / "k"), "--max-pending", "7",
                          "--max-pending-per-address", "3", "--max-datagram-rate", "0",
                          "--max-send-buffer", "1234", "--max-login-failures", "9"])
    service = makeService(options, MemoryReactorClock())
    limits = service.login_factory.limits
    assert (limits.pending.max_total, limits.pending.max_per_address) == (7, 3)
    assert limits.max_send_buffer == 1234 and limits.attempts.free == 9
    assert service.registry.datagram_rate == 0


def test_the_backoff_wait_reads_as_whole_seconds_in_the_singular_too():
    limits = L.Limits(attempts=L.LoginAttempts(free=1, backoff=4.0, backoff_max=60.0))
    server = Harness(application=RecordingApp(), limits=limits, users={"alice": "pw"})
    for _ in range(10):  # wrong passwords until the server holds the address back
        refused = [e for e in server.connect().attempt_login("alice", "wrong") if error_codes([e])]
        if refused[0].code == ErrorCode.TOO_MANY_ATTEMPTS:
            break
    server.clock.advance(3.5)  # 0.5 s of the 4 s backoff left
    refused = [e for e in server.connect().attempt_login("alice", "pw") if error_codes([e])]
    assert refused[0].code == ErrorCode.TOO_MANY_ATTEMPTS
    assert refused[0].reason.endswith("try again in 1 second"), refused[0].reason
