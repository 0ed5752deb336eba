"""Property tests of the UDP side: packets, the replay window, the datagram channel.

Random, replayed, tampered and token-swapped packets at
``SessionRegistry.datagram_received`` get no reply and change no session.
The replay window agrees with a simple model: a set of accepted counters and
the highest one.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamesession.protocol.datagram import HEADER_SIZE, MIN_PACKET, TOKEN_SIZE, Kind
from gamesession.protocol.replay import ReplayWindow

from conftest import examples
from fakes import Harness, RecordingApp, check_registry

pytestmark = pytest.mark.timeout(300)

SETTINGS = settings(max_examples=examples(200), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ALICE_ADDRESS = ("203.0.113.1", 4000)
BOB_ADDRESS = ("203.0.113.2", 4000)
ATTACKER = ("198.51.100.66", 6666)


def two_sessions(**registry):
    """A server with alice and bob logged in, their UDP addresses known."""
    server = Harness(application=RecordingApp(), **registry)
    conns = {}
    for user, address in (("alice", ALICE_ADDRESS), ("bob", BOB_ADDRESS)):
        conn = server.connect()
        conn.attempt_login(user)
        server.registry.datagram_received(conn.core.datagram(Kind.KEEPALIVE), address)
        conns[user] = conn
    server.udp.sent.clear()
    return server, conns


def snapshot(registry):
    return {
        token: (s.user, s.address, s.last_seen, s.last_sent, s.ended, s.channel.send_counter,
                s.channel.window.highest, s.channel.window.bits)
        for token, s in registry.by_token.items()
    }


def assert_untouched(server, before, events):
    assert server.udp.sent == []
    assert snapshot(server.registry) == before
    assert server.app.events == events
    check_registry(server.registry)


@SETTINGS
@given(packets=st.lists(st.binary(max_size=1500), max_size=30))
def test_random_bytes_get_no_reply_and_change_nothing(packets):
    server, _ = two_sessions()
    before, events = snapshot(server.registry), list(server.app.events)
    for packet in packets:
        server.registry.datagram_received(packet, ATTACKER)
    assert_untouched(server, before, events)
    assert server.stats.udp_in_packets == len(packets) + 2
    assert sum(server.stats.dropped.values()) == len(packets)


@SETTINGS
@given(which=st.sampled_from(["alice", "bob"]), body=st.binary(min_size=MIN_PACKET - TOKEN_SIZE,
                                                                 max_size=1500))
def test_live_token_with_random_body_changes_nothing(which, body):
    server, conns = two_sessions()
    before, events = snapshot(server.registry), list(server.app.events)
    server.registry.datagram_received(conns[which].core.channel.token + body, ATTACKER)
    assert_untouched(server, before, events)


def tamper(packet: bytes, how: str, position: int, other_token: bytes) -> bytes:
    if how == "flip":
        index = position % (len(packet) * 8)
        data = bytearray(packet)
        data[index // 8] ^= 1 << (index % 8)
        return bytes(data)
    if how == "truncate":
        return packet[:position % len(packet)]
    if how == "extend":
        return packet + bytes([position % 256]) * (1 + position % 7)
    if how == "swap_token":
        return other_token + packet[TOKEN_SIZE:]
    if how == "counter":
        counter = int.from_bytes(packet[TOKEN_SIZE:HEADER_SIZE], "little")
        new = (counter + 1 + position) % 2**64
        return packet[:TOKEN_SIZE] + new.to_bytes(8, "little") + packet[HEADER_SIZE:]
    raise AssertionError(how)


@SETTINGS
@given(kind=st.sampled_from(list(Kind)), payload=st.binary(max_size=200),
       how=st.sampled_from(["flip", "truncate", "extend", "swap_token", "counter"]),
       position=st.integers(0, 10**6), delivered=st.booleans())
def test_tampered_packets_are_dropped(kind, payload, how, position, delivered):
    """A captured packet of alice, delivered or not, tampered any way: dropped."""
    server, conns = two_sessions()
    alice, bob = conns["alice"], conns["bob"]
    packet = alice.core.datagram(kind, payload)
    if delivered:
        # It reached the server first (an on-path capture of a live packet).
        server.registry.datagram_received(alice.core.datagram(Kind.KEEPALIVE), ALICE_ADDRESS)
        server.registry.datagram_received(packet, ALICE_ADDRESS)
        if kind == Kind.DISCONNECT:
            return
        server.udp.sent.clear()
    before, events = snapshot(server.registry), list(server.app.events)
    forged = tamper(packet, how, position, bob.core.channel.token)
    server.registry.datagram_received(forged, ATTACKER)
    assert_untouched(server, before, events)


@SETTINGS
@given(kinds=st.lists(st.sampled_from(list(Kind)), min_size=1, max_size=20),
       replays=st.lists(st.integers(0, 100), max_size=20))
def test_replays_are_dropped(kinds, replays):
    server, conns = two_sessions()
    alice = conns["alice"]
    sent = []
    for kind in kinds:
        if kind == Kind.DISCONNECT:
            continue
        packet = alice.core.datagram(kind, b"p")
        server.registry.datagram_received(packet, ALICE_ADDRESS)
        sent.append(packet)
    server.udp.sent.clear()
    before, events = snapshot(server.registry), list(server.app.events)
    for index in replays:
        if sent:
            server.registry.datagram_received(sent[index % len(sent)], ATTACKER)
    assert_untouched(server, before, events)


# -- the replay window against a model ------------------------------------------------------

counters = st.one_of(
    st.integers(0, 3000),
    st.integers(0, 2**64 - 1),
    st.integers(2**64 - 3000, 2**64 - 1),
)


# A step is an absolute counter, one near the newest, or one near the window's
# far edge (age size-2 .. size+2): the off-by-one cases random counters miss.
steps_strategy = st.lists(st.tuples(
    st.one_of(counters.map(lambda c: ("absolute", c)),
              st.integers(-3, 3).map(lambda d: ("near_newest", d)),
              st.integers(-2, 2).map(lambda d: ("window_edge", d))),
    st.booleans()), max_size=200)


@settings(max_examples=examples(500), deadline=None)
@given(steps=steps_strategy, size=st.sampled_from([8, 64, 1024]))
def test_replay_window_matches_a_set_and_a_highest(steps, size):
    window = ReplayWindow(size)
    seen, highest = set(), -1
    for (kind, value), opens in steps:
        if kind == "absolute":
            counter = value
        elif kind == "near_newest":
            counter = highest + value
        else:
            counter = highest - size + value  # age size - value
        if not 0 <= counter <= 2**64 - 1:
            continue
        expected_fresh = counter not in seen and counter > highest - size
        assert window.fresh(counter) == expected_fresh
        if expected_fresh and opens:  # mark only what opened, as the channel does
            assert window.mark(counter) == (counter > highest)
            seen.add(counter)
            highest = max(highest, counter)
        assert window.highest == highest
        assert window.bits < 2 ** size


ADDRESSES = [ALICE_ADDRESS, ("203.0.113.1", 4001), ("192.0.2.50", 5000), ATTACKER]


@SETTINGS
@given(sends=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(ADDRESSES),
                                st.sampled_from(["good", "forged", "bad_kind"])),
                      min_size=1, max_size=40))
def test_only_the_newest_authenticated_counter_moves_the_address(sends):
    """Roaming: the address follows the packet with the newest counter that
    opened; a replay, an older counter, a forged box or a bad kind moves nothing."""
    server, conns = two_sessions()
    alice = conns["alice"].core
    session = server.registry.by_user["alice"]
    base = session.channel.window.highest + 1
    address, highest, seen, roams = ALICE_ADDRESS, base - 1, set(), 0
    for offset, source, how in sends:
        counter = base + offset
        alice.channel.send_counter = counter
        packet = alice.datagram(Kind.KEEPALIVE if how != "bad_kind" else 0x7F)
        if how == "forged":
            packet = packet[:-1] + bytes([packet[-1] ^ 1])
        server.registry.datagram_received(packet, source)
        if how != "forged" and counter not in seen:
            seen.add(counter)  # marked once it opened, even with a bad kind
            if counter > highest:
                highest = counter
                if how == "good" and source != address:
                    address, roams = source, roams + 1
        assert session.address == address
        assert server.stats.roams == roams
    assert server.registry.by_user["bob"].address == BOB_ADDRESS


@settings(max_examples=examples(100), deadline=None)
@given(order=st.permutations(list(range(40))), drop=st.sets(st.integers(0, 39)))
def test_channel_accepts_reordered_packets_once(order, drop):
    """Reordering within the window loses nothing; each packet is accepted once."""
    server, conns = two_sessions()
    alice = conns["alice"]
    packets = [alice.core.datagram(Kind.DATA, bytes([i])) for i in range(40)]
    for i in order:
        if i not in drop:
            server.registry.datagram_received(packets[i], ALICE_ADDRESS)
    for packet in packets:  # everything again: the dropped ones arrive late, the rest are replays
        server.registry.datagram_received(packet, ALICE_ADDRESS)
    got = [e[2] for e in server.app.events if e[0] == "datagram"]
    assert sorted(got) == [bytes([i]) for i in range(40)]
    assert server.stats.dropped["replay"] == 40 - len(drop)
