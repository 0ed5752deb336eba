"""Structured log events: kick, timeout, and the periodic drop summary."""

from twisted.application import internet
from twisted.internet import task
from twisted.logger import capturedLogs

from gamesession.protocol.datagram import Kind
from gamesession.ops.stats import ServerStats
from gamesession.ops.summary import DropSummary

from test_metrics import CLIENT_UDP, log_in, metrics_server


def events(captured, name):
    return [e for e in captured if e.get("event") == name]


def test_summary_logs_once_per_period_with_counts_and_nothing_when_idle():
    clock = task.Clock()
    stats = ServerStats()
    summary = DropSummary(stats, period=60)
    timer = internet.TimerService(60, summary.tick)
    timer.clock = clock
    with capturedLogs() as captured:
        timer.startService()  # first tick at start: nothing dropped yet
        for _ in range(500):
            stats.dropped["short"] += 1
        stats.dropped["unknown_token"] += 3
        clock.advance(60)
        clock.advance(60)  # nothing new: no event
        stats.dropped["short"] += 2
        clock.advance(60)
        timer.stopService()
    summaries = events(captured, "drops_summary")
    assert len(summaries) == 2
    first, second = summaries
    assert first["dropped"] == {"short": 500, "unknown_token": 3}
    assert first["count"] == 503
    assert second["dropped"] == {"short": 2}
    assert second["totals"] == {"short": 502, "unknown_token": 3}
    assert all(e["log_level"].name == "info" for e in summaries)


def test_summary_is_silent_when_nothing_was_dropped():
    summary = DropSummary(ServerStats(), period=60)
    with capturedLogs() as captured:
        for _ in range(3):
            summary.tick()
    assert list(captured) == []


def test_bad_datagrams_are_not_logged_one_by_one():
    server = metrics_server()
    core, _ = log_in(server, "alice")
    with capturedLogs() as captured:
        for _ in range(100):
            server.registry.datagram_received(b"junk", CLIENT_UDP)
            server.registry.datagram_received(bytes(64), CLIENT_UDP)
    assert list(captured) == []
    assert server.stats.dropped == {"short": 100, "unknown_token": 100}


def test_login_and_logout_events_carry_fields():
    server = metrics_server()
    with capturedLogs() as captured:
        core, _ = log_in(server, "alice")
        server.registry.datagram_received(core.datagram(Kind.DISCONNECT), CLIENT_UDP)
    [login] = events(captured, "login")
    assert (login["user"], login["outcome"], login["peer"]) == ("alice", "ok", "127.0.0.1")
    [ended] = events(captured, "session_ended")
    assert (ended["user"], ended["reason"]) == ("alice", "logout")


def test_kick_and_replaced_log_a_kick_event():
    server = metrics_server()
    with capturedLogs() as captured:
        log_in(server, "alice")
        server.registry.by_user["alice"].kick()
        log_in(server, "bob")
        log_in(server, "bob")  # duplicate login: the old one is replaced
    kicks = events(captured, "kick")
    assert [(e["user"], e["reason"]) for e in kicks] == [("alice", "kicked"), ("bob", "replaced")]
    assert kicks[0]["address"] == CLIENT_UDP


def test_timeout_logs_a_timeout_event_with_idle_time():
    server = metrics_server(keepalive=2.0, session_timeout=10.0)
    log_in(server, "alice")
    with capturedLogs() as captured:
        server.clock.advance(10.5)
        server.registry.sweep()
    [timeout] = events(captured, "timeout")
    assert timeout["user"] == "alice"
    assert timeout["idle"] == 10.5
    [ended] = events(captured, "session_ended")
    assert ended["reason"] == "timeout"
    assert server.figure("gamesession_logouts_total", reason="timeout") == 1
