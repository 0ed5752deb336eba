"""The figures move as they should: logins, sessions, drops, RTT, knocks.

Everything runs in memory: a task.Clock, the real LoginFactory on a
StringTransport driven by the sans-I/O ClientCore, and a fake UDP transport.
The figures are read the way Prometheus reads them: generate_latest() on the
server's own CollectorRegistry, parsed back with prometheus_client's parser.
"""

import collections

import pytest

from gamesession.ops.metrics import DROP_REASONS, make_registry
from gamesession.ops.stats import RttHistogram
from gamesession.protocol.clientcore import LoginFailed
from gamesession.protocol.datagram import Kind
from gamesession.protocol.wire import ErrorCode

from fakes import Harness

CLIENT_UDP = ("127.0.0.1", 40000)


def metrics_server(**registry_options):
    """An in-memory server speaking the line framing, as the metrics tests use it."""
    return Harness(framing="line", **registry_options)


def log_in(server, user, host="127.0.0.1"):
    """Log ``user`` in over TCP from ``host`` and send the first UDP packet; the client core."""
    connection, _ = server.logged_in(user, "", host=host)
    core = connection.core
    server.registry.datagram_received(core.datagram(Kind.KEEPALIVE), CLIENT_UDP)
    return core, connection.protocol


def test_login_moves_logins_ok_sessions_and_packets():
    server = metrics_server()
    assert server.figure("gamesession_logins_total", outcome="ok") == 0
    assert server.figure("gamesession_sessions_active") == 0
    log_in(server, "alice")
    assert server.figure("gamesession_logins_total", outcome="ok") == 1
    assert server.figure("gamesession_sessions_active") == 1
    assert server.figure("gamesession_tcp_connections_total") == 1
    assert server.figure("gamesession_tcp_pending_login") == 0
    assert server.figure("gamesession_udp_datagrams_total", direction="in") == 1
    assert server.figure("gamesession_udp_bytes_total", direction="in") > 0


def test_pending_login_and_auth_failure():
    server = metrics_server()
    server.connect()
    assert server.figure("gamesession_tcp_pending_login") == 1
    server.clock.advance(server.factory.login_timeout)
    assert server.figure("gamesession_tcp_pending_login") == 0
    assert server.figure("gamesession_protocol_errors_total", code="login_timeout") == 1


def test_refused_login_counts_its_outcome():
    server = metrics_server(duplicate_login="reject")
    log_in(server, "alice")
    with pytest.raises(LoginFailed) as refused:
        log_in(server, "alice")
    assert refused.value.code == ErrorCode.ALREADY_LOGGED_IN
    assert server.figure("gamesession_logins_total", outcome="already_logged_in") == 1
    assert server.figure("gamesession_logins_total", outcome="ok") == 1
    assert server.figure("gamesession_sessions_active") == 1


def test_logout_moves_logouts_and_sessions():
    server = metrics_server()
    core, _ = log_in(server, "alice")
    server.registry.datagram_received(core.datagram(Kind.DISCONNECT), CLIENT_UDP)
    assert server.figure("gamesession_sessions_active") == 0
    assert server.figure("gamesession_logouts_total", reason="logout") == 1
    assert server.figure("gamesession_logouts_total", reason="timeout") == 0


@pytest.mark.parametrize("reason", ["short", "unknown_token", "bad_box", "replay", "bad_kind"])
def test_bad_datagram_moves_its_drop_reason(reason):
    server = metrics_server()
    core, _ = log_in(server, "alice")
    good = core.datagram(Kind.DATA, b"x")
    if reason == "short":
        packet = good[:20]
    elif reason == "unknown_token":
        packet = bytes(8) + good[8:]
    elif reason == "bad_box":
        packet = good[:-1] + bytes([good[-1] ^ 1])
    elif reason == "replay":
        server.registry.datagram_received(good, CLIENT_UDP)
        packet = good
    else:
        packet = core.datagram(0x7F, b"")
    before = server.figures()
    server.registry.datagram_received(packet, CLIENT_UDP)
    after = server.figures()
    moved = {key: after[key] - before[key] for key in after
             if key[0] == "gamesession_udp_dropped_total" and after[key] != before[key]}
    assert moved == {("gamesession_udp_dropped_total", (("reason", reason),)): 1}


def test_every_documented_drop_reason_is_exported_and_new_ones_too():
    server = metrics_server()
    server.stats.dropped["invented_later"] += 2
    figures = server.figures()
    for reason in DROP_REASONS + ("invented_later",):
        assert ("gamesession_udp_dropped_total", (("reason", reason),)) in figures
    assert figures[("gamesession_udp_dropped_total", (("reason", "invented_later"),))] == 2


def test_keepalive_is_a_ping_and_its_pong_records_the_rtt():
    server = metrics_server(keepalive=2.0, session_timeout=10.0)
    core, _ = log_in(server, "alice")
    server.clock.advance(2.0)
    server.udp.sent.clear()
    server.registry.sweep()
    [(packet, address)] = server.udp.sent
    assert address == CLIENT_UDP
    kind, ping_id = core.datagram_received(packet)
    assert kind == Kind.PING and len(ping_id) == 8
    server.clock.advance(0.02)
    server.registry.datagram_received(core.datagram(Kind.PONG, ping_id), CLIENT_UDP)
    assert server.figure("gamesession_rtt_seconds_count") == 1
    assert server.figure("gamesession_rtt_seconds_sum") == pytest.approx(0.02)
    assert server.figure("gamesession_rtt_seconds_bucket", le="0.01") == 0
    assert server.figure("gamesession_rtt_seconds_bucket", le="0.025") == 1
    assert server.figure("gamesession_rtt_seconds_bucket", le="+Inf") == 1
    # The same PONG again (a new counter) or a PONG with another id records nothing.
    server.registry.datagram_received(core.datagram(Kind.PONG, ping_id), CLIENT_UDP)
    server.registry.datagram_received(core.datagram(Kind.PONG, b"forged!!"), CLIENT_UDP)
    assert server.figure("gamesession_rtt_seconds_count") == 1
    # The session stays alive on pongs alone.
    assert server.figure("gamesession_sessions_active") == 1


def test_rtt_histogram_buckets_are_bounded_and_cumulative_on_export():
    histogram = RttHistogram()
    for rtt in (0.0005, 0.001, 0.003, 0.2, 100.0):
        histogram.observe(rtt)
    assert len(histogram.counts) == len(histogram.bounds) + 1
    assert histogram.count == 5
    assert histogram.counts[0] == 2  # le=0.001 includes 0.001 itself
    assert histogram.counts[-1] == 1


def test_limits_are_exported_by_name():
    server = metrics_server()
    assert server.figure("gamesession_limited_total", limit="send_buffer") == 0
    server.registry.stats.limited["pending_per_address"] += 2
    assert server.figure("gamesession_limited_total", limit="pending_per_address") == 2
    assert server.figure("gamesession_logins_total", outcome="too_many_attempts") == 0


def test_roam_is_counted():
    server = metrics_server()
    core, _ = log_in(server, "alice")
    server.registry.datagram_received(core.datagram(Kind.DATA, b"x"), ("127.0.0.1", 40001))
    assert server.figure("gamesession_roams_total") == 1


def test_knock_counters_exported_when_a_gate_is_given():
    class Knocker:
        stats = collections.Counter(knocks=5, grants=1, bad_mac=2, allowed_connections=1,
                                    rejected_connections=3)

    class Gate:
        knocker = Knocker()

    server = metrics_server()
    assert not any(name.startswith("gamesession_knock") for name, _ in server.figures())
    for knock in (Knocker(), Gate()):
        server.collectors = make_registry(server.registry, knock=knock)
        assert server.figure("gamesession_knocks_total") == 5
        assert server.figure("gamesession_knock_grants_total") == 1
        assert server.figure("gamesession_knock_connections_total", outcome="rejected") == 3
        assert server.figure("gamesession_knock_connections_total", outcome="allowed") == 1
        assert server.figure("gamesession_knock_events_total", event="bad_mac") == 2


def test_each_server_has_its_own_registry():
    first, second = metrics_server(), metrics_server()
    log_in(first, "alice")
    assert first.figure("gamesession_sessions_active") == 1
    assert second.figure("gamesession_sessions_active") == 0
