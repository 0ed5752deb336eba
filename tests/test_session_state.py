"""A session is one compact object: its own UDP channel, its bucket in slots, no dict."""

import gc

from gamesession.protocol.datagram import Kind

from fakes import Harness

HOME = ("203.0.113.5", 40000)


def test_a_session_through_its_life_stays_one_object_without_a_dict():
    harness = Harness(datagram_rate=50.0)
    connection, session = harness.logged_in()
    assert session.channel is session
    for kind in (Kind.KEEPALIVE, Kind.PING, Kind.DATA, Kind.PONG):
        harness.registry.datagram_received(connection.core.datagram(kind, b"12345678"), HOME)
    harness.clock.advance(2.0)
    harness.registry.sweep()  # a keepalive PING: sets ping_id and ping_sent
    assert session.ping_id is not None and session.address == HOME
    # No instance dict was ever made: every attribute lives in a slot.
    assert not any(isinstance(r, dict) for r in gc.get_referents(session))
    window = session.channel.window  # a copy of the two numbers, to look at
    assert (window.highest, window.bits) == (session.highest, session.bits) == (3, 0b1111)


def test_a_game_may_still_hang_its_own_attribute_on_a_session():
    harness = Harness()
    _, session = harness.logged_in()
    session.room = "lobby"  # lands in the lazily made __dict__
    assert session.room == "lobby"
