"""The figures move as they should: logins, sessions, drops, RTT, knocks.

Everything runs in memory: a task.Clock, the real LoginFactory on a
StringTransport driven by the sans-I/O ClientCore, and a fake UDP transport.
The figures are read the way Prometheus reads them: generate_latest() on the
server's own CollectorRegistry, parsed back with prometheus_client's parser.
"""

import collections

import pytest
from nacl.public import PrivateKey
from prometheus_client import generate_latest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from gamesession.server.accounts import make_portal
from gamesession.protocol.clientcore import ClientCore
from gamesession.protocol.datagram import Kind
from gamesession.server.login import LoginFactory
from gamesession.ops.metrics import DROP_REASONS, make_registry
from gamesession.server.registry import SessionRegistry
from gamesession.ops.stats import RttHistogram
from gamesession.client.status import Figures

from fakes import FakeUDP

CLIENT_UDP = ("127.0.0.1", 40000)


class Server:
    """A server's login service and registry, in memory."""

    def __init__(self, **registry_options):
        self.clock = task.Clock()
        self.registry = SessionRegistry(self.clock, **registry_options)
        self.stats = self.registry.stats
        self.udp = FakeUDP()
        self.registry.transport = self.udp
        self.key = PrivateKey.generate()
        self.factory = LoginFactory(make_portal([]), self.registry, self.key, 7001, self.clock,
                                    framing="line")
        self.collectors = make_registry(self.registry)

    def connect(self, port=50000):
        peer = IPv4Address("TCP", "127.0.0.1", port)
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        return protocol, transport

    def login(self, user, port=50000):
        """Log ``user`` in over TCP and send the first UDP packet; the client core."""
        core = ClientCore(bytes(self.key.public_key), user, "")
        protocol, transport = self.connect(port)
        frames = [core.hello()]
        while frames and core.welcome is None:
            for frame in frames:
                protocol.dataReceived(frame + b"\n")
            replies = transport.value().split(b"\n")
            transport.clear()
            frames = []
            for reply in replies:
                if reply:
                    out, _ = core.frame_received(reply)
                    frames.extend(out)
        assert core.welcome is not None
        self.registry.datagram_received(core.datagram(Kind.KEEPALIVE), CLIENT_UDP)
        return core, protocol

    def figures(self):
        """{(name, labels): value} of one scrape."""
        return Figures(generate_latest(self.collectors).decode()).samples

    def figure(self, name, **labels):
        return self.figures()[(name, tuple(sorted(labels.items())))]


def test_login_moves_logins_ok_sessions_and_packets():
    server = Server()
    assert server.figure("gamesession_logins_total", outcome="ok") == 0
    assert server.figure("gamesession_sessions_active") == 0
    server.login("alice")
    assert server.figure("gamesession_logins_total", outcome="ok") == 1
    assert server.figure("gamesession_sessions_active") == 1
    assert server.figure("gamesession_tcp_connections_total") == 1
    assert server.figure("gamesession_tcp_pending_login") == 0
    assert server.figure("gamesession_udp_datagrams_total", direction="in") == 1
    assert server.figure("gamesession_udp_bytes_total", direction="in") > 0


def test_pending_login_and_auth_failure():
    server = Server()
    server.connect()
    assert server.figure("gamesession_tcp_pending_login") == 1
    server.clock.advance(server.factory.login_timeout)
    assert server.figure("gamesession_tcp_pending_login") == 0
    assert server.figure("gamesession_protocol_errors_total", code="login_timeout") == 1


def test_refused_login_counts_its_outcome():
    server = Server(duplicate_login="reject")
    server.login("alice")
    with pytest.raises(Exception):
        server.login("alice", port=50001)
    assert server.figure("gamesession_logins_total", outcome="already_logged_in") == 1
    assert server.figure("gamesession_logins_total", outcome="ok") == 1
    assert server.figure("gamesession_sessions_active") == 1


def test_logout_moves_logouts_and_sessions():
    server = Server()
    core, _ = server.login("alice")
    server.registry.datagram_received(core.datagram(Kind.DISCONNECT), CLIENT_UDP)
    assert server.figure("gamesession_sessions_active") == 0
    assert server.figure("gamesession_logouts_total", reason="logout") == 1
    assert server.figure("gamesession_logouts_total", reason="timeout") == 0


@pytest.mark.parametrize("reason", ["short", "unknown_token", "bad_box", "replay", "bad_kind"])
def test_bad_datagram_moves_its_drop_reason(reason):
    server = Server()
    core, _ = server.login("alice")
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
    server = Server()
    server.stats.dropped["invented_later"] += 2
    figures = server.figures()
    for reason in DROP_REASONS + ("invented_later",):
        assert ("gamesession_udp_dropped_total", (("reason", reason),)) in figures
    assert figures[("gamesession_udp_dropped_total", (("reason", "invented_later"),))] == 2


def test_keepalive_is_a_ping_and_its_pong_records_the_rtt():
    server = Server(keepalive=2.0, session_timeout=10.0)
    core, _ = server.login("alice")
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
    server = Server()
    assert server.figure("gamesession_limited_total", limit="send_buffer") == 0
    server.registry.stats.limited["pending_per_address"] += 2
    assert server.figure("gamesession_limited_total", limit="pending_per_address") == 2
    assert server.figure("gamesession_logins_total", outcome="too_many_attempts") == 0


def test_roam_is_counted():
    server = Server()
    core, _ = server.login("alice")
    server.registry.datagram_received(core.datagram(Kind.DATA, b"x"), ("127.0.0.1", 40001))
    assert server.figure("gamesession_roams_total") == 1


def test_knock_counters_exported_when_a_gate_is_given():
    class Knocker:
        stats = collections.Counter(knocks=5, grants=1, bad_mac=2, allowed_connections=1,
                                    rejected_connections=3)

    class Gate:
        knocker = Knocker()

    server = Server()
    assert not any(name.startswith("gamesession_knock") for name, _ in server.figures())
    for knock in (Knocker(), Gate()):
        server.collectors = make_registry(server.registry, knock=knock)
        assert server.figure("gamesession_knocks_total") == 5
        assert server.figure("gamesession_knock_grants_total") == 1
        assert server.figure("gamesession_knock_connections_total", outcome="rejected") == 3
        assert server.figure("gamesession_knock_connections_total", outcome="allowed") == 1
        assert server.figure("gamesession_knock_events_total", event="bad_mac") == 2


def test_each_server_has_its_own_registry():
    first, second = Server(), Server()
    first.login("alice")
    assert first.figure("gamesession_sessions_active") == 1
    assert second.figure("gamesession_sessions_active") == 0
