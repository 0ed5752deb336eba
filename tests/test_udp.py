"""The UDP game channel through the registry: authentication, replay, roaming, timers."""

import pytest

from gamesession.protocol.clientcore import SessionEnded
from gamesession.protocol.datagram import Kind
from gamesession.protocol.replay import WINDOW_SIZE, ReplayWindow

from fakes import Harness

HOME = ("203.0.113.5", 40001)
ROAMED = ("198.51.100.77", 51234)
ATTACKER = ("192.0.2.66", 6666)


@pytest.fixture
def harness():
    return Harness(users={"alice": "pw", "bob": "pw"})


def client_packet(connection, kind=Kind.PING, payload=b"12345678"):
    return connection.core.datagram(kind, payload)


def opened(connection, sent):
    """What the client makes of the server's datagrams: [(kind, payload, address)]."""
    return [connection.core.datagram_received(packet) + (address,) for packet, address in sent]


def test_first_authenticated_packet_sets_the_address_and_ping_is_answered(harness):
    connection, session = harness.logged_in()
    assert session.address is None
    harness.registry.datagram_received(client_packet(connection), HOME)
    assert session.address == HOME
    assert opened(connection, harness.udp_sent()) == [(Kind.PONG, b"12345678", HOME)]
    assert harness.stats.udp_in_packets == 1 and harness.stats.udp_out_packets == 1


def test_application_datagrams_echo(harness):
    connection, session = harness.logged_in()
    harness.registry.datagram_received(client_packet(connection, Kind.DATA, b"move 3 4"), HOME)
    assert opened(connection, harness.udp_sent()) == [(Kind.DATA, b"move 3 4", HOME)]


@pytest.mark.parametrize("mangle, reason", [
    (lambda p: p, "replay"),
    (lambda p: p[:-1] + bytes([p[-1] ^ 1]), "bad_box"),
    (lambda p: p[:20] + bytes([p[20] ^ 0x80]) + p[21:], "bad_box"),
    (lambda p: p[:9] + bytes([p[9] ^ 1]) + p[10:], "bad_box"),
    (lambda p: p[:-3], "bad_box"),
    (lambda p: p[:32], "short"),
    (lambda p: b"", "short"),
    (lambda p: bytes([p[0] ^ 1]) + p[1:], "unknown_token"),
])
def test_tampered_and_replayed_packets_are_dropped_silently(harness, mangle, reason):
    connection, session = harness.logged_in()
    packet = client_packet(connection)
    unsent = client_packet(connection)
    harness.registry.datagram_received(packet, HOME)
    harness.udp_sent()
    before = (session.address, session.channel.window.highest, session.channel.window.bits)
    harness.registry.datagram_received(mangle(packet if reason == "replay" else unsent), ATTACKER)
    assert harness.udp_sent() == []
    assert harness.stats.dropped[reason] == 1
    assert (session.address, session.channel.window.highest, session.channel.window.bits) == before


def test_token_swapped_to_another_live_session_is_dropped(harness):
    alice, a = harness.logged_in("alice")
    bob, b = harness.logged_in("bob")
    packet = client_packet(alice)
    swapped = b.token + packet[8:]
    harness.registry.datagram_received(swapped, ATTACKER)
    assert harness.udp_sent() == []
    assert harness.stats.dropped["bad_box"] == 1
    assert b.address is None and b.channel.window.highest == -1
    # Alice's genuine packet still works afterwards: nothing was marked.
    harness.registry.datagram_received(packet, HOME)
    assert a.address == HOME


def test_forged_counter_does_not_block_real_packets(harness):
    """A far-future counter that fails to open must not advance the window."""
    connection, session = harness.logged_in()
    real = client_packet(connection)
    forged = real[:8] + (2**63).to_bytes(8, "little") + real[16:]
    harness.registry.datagram_received(forged, ATTACKER)
    harness.registry.datagram_received(real, HOME)
    assert session.address == HOME and harness.stats.dropped["bad_box"] == 1


def test_reordering_inside_the_window_is_accepted_once_each(harness):
    connection, session = harness.logged_in()
    packets = [client_packet(connection, Kind.DATA, bytes([i])) for i in range(10)]
    order = [3, 0, 9, 1, 2, 8, 4, 7, 5, 6]
    for i in order:
        harness.registry.datagram_received(packets[i], HOME)
    got = sorted(payload for _, payload, _ in opened(connection, harness.udp_sent()))
    assert got == [bytes([i]) for i in range(10)]
    for i in order:
        harness.registry.datagram_received(packets[i], HOME)
    assert harness.udp_sent() == [] and harness.stats.dropped["replay"] == 10


def test_packets_older_than_the_window_are_dropped(harness):
    connection, session = harness.logged_in()
    old = client_packet(connection)
    for _ in range(WINDOW_SIZE):
        client_packet(connection)
    harness.registry.datagram_received(client_packet(connection), HOME)
    harness.udp_sent()
    harness.registry.datagram_received(old, HOME)
    assert harness.udp_sent() == [] and harness.stats.dropped["replay"] == 1


def test_roaming_follows_the_newest_authenticated_counter(harness):
    connection, session = harness.logged_in()
    early = client_packet(connection)
    late = client_packet(connection)
    harness.registry.datagram_received(late, HOME)
    # An older (reordered) packet from elsewhere is accepted but does not move the session.
    harness.registry.datagram_received(early, ROAMED)
    assert session.address == HOME
    # The NAT rebinds: the next newest packet comes from a new source port.
    harness.registry.datagram_received(client_packet(connection), ROAMED)
    assert session.address == ROAMED and harness.stats.roams == 1
    sent = harness.udp_sent()
    assert [address for _, address in sent] == [HOME, HOME, ROAMED]


def test_replayed_packet_from_elsewhere_does_not_steal_the_session(harness):
    connection, session = harness.logged_in()
    packet = client_packet(connection)
    harness.registry.datagram_received(packet, HOME)
    harness.registry.datagram_received(packet, ATTACKER)
    assert session.address == HOME


def test_server_never_sends_before_it_knows_the_address(harness):
    connection, session = harness.logged_in()
    assert session.send_datagram(b"early") is False
    harness.clock.advance(3)
    harness.registry.sweep()
    assert harness.udp_sent() == []


def test_keepalives_when_idle_and_timeout_when_silent(harness):
    connection, session = harness.logged_in()
    harness.registry.datagram_received(client_packet(connection, Kind.KEEPALIVE, b""), HOME)
    harness.clock.advance(1.0)
    harness.registry.sweep()
    assert harness.udp_sent() == []
    harness.clock.advance(1.0)
    harness.registry.sweep()
    # The server's keepalive is a PING with an 8-byte id; its PONG gives the RTT.
    [(kind, ping_id, address)] = opened(connection, harness.udp_sent())
    assert (kind, len(ping_id), address) == (Kind.PING, 8, HOME)
    # Client keepalives keep the session alive past the timeout.
    for _ in range(6):
        harness.clock.advance(2.0)
        harness.registry.datagram_received(client_packet(connection, Kind.KEEPALIVE, b""), HOME)
        harness.registry.sweep()
    assert session.ended is None
    harness.udp_sent()
    harness.clock.advance(10.0)
    harness.registry.sweep()
    assert session.ended == "timeout"
    assert opened(connection, harness.udp_sent()) == [(Kind.DISCONNECT, b"timeout", HOME)]
    assert connection.pump() == [SessionEnded("timeout")]
    assert connection.closed and len(harness.registry) == 0


def test_client_disconnect_datagram_ends_the_session(harness):
    connection, session = harness.logged_in()
    harness.registry.datagram_received(client_packet(connection, Kind.DISCONNECT, b""), HOME)
    assert session.ended == "logout"
    assert harness.udp_sent() == []


def test_kick_tells_the_client_on_both_channels(harness):
    connection, session = harness.logged_in()
    harness.registry.datagram_received(client_packet(connection, Kind.KEEPALIVE, b""), HOME)
    session.kick()
    assert opened(connection, harness.udp_sent()) == [(Kind.DISCONNECT, b"kicked", HOME)]
    assert connection.pump() == [SessionEnded("kicked")]


def test_replaced_session_token_is_revoked(harness):
    first, old = harness.logged_in()
    packet = client_packet(first)
    harness.logged_in()
    harness.registry.datagram_received(packet, HOME)
    assert harness.stats.dropped["unknown_token"] == 1


class TestReplayWindow:
    def test_fresh_until_marked(self):
        window = ReplayWindow(8)
        assert window.fresh(0) and window.mark(0)
        assert not window.fresh(0)
        assert window.fresh(5) and window.mark(5)
        assert window.fresh(3) and not window.mark(3)
        assert not window.fresh(3)

    def test_too_old(self):
        window = ReplayWindow(8)
        window.mark(100)
        assert window.fresh(93) and not window.fresh(92)

    def test_huge_jump_is_cheap_and_correct(self):
        window = ReplayWindow(8)
        window.mark(1)
        window.mark(2**64 - 2)
        assert window.bits == 1 and not window.fresh(1)
