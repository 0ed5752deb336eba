"""Session timers in deadline buckets, in bounded steps, on an injected clock (task.Clock)."""

import os

from twisted.internet import task

from gamesession.protocol.datagram import Kind
from gamesession.server.registry import SessionRegistry
from gamesession.server.tap import SweepService
from gamesession.server.timers import DeadlineWheel

from fakes import FakeUDP


class Keys:
    def __init__(self):
        self.udp_s2c = os.urandom(32)
        self.udp_c2s = os.urandom(32)


class Control:
    def send_data(self, payload):
        pass

    def session_ended(self, reason):
        pass


def registry_with(count, keepalive=2.0, session_timeout=10.0):
    clock = task.Clock()
    clock.advance(1000)
    registry = SessionRegistry(clock, keepalive=keepalive, session_timeout=session_timeout,
                               max_sessions=count + 1)
    registry.transport = FakeUDP()
    sessions = []
    for i in range(count):
        session = registry.open("u{}".format(i), object(), lambda: None, Control(), Keys())
        session.address = ("127.0.0.1", 20000 + i)
        sessions.append(session)
    return clock, registry, sessions


def count_looked_at(registry):
    """Wrap the registry's timer buckets to count the sessions each sweep takes out."""
    taken = []
    due = registry.timers.due

    def counting(now, limit):
        out = due(now, limit)
        taken.append(len(out))
        return out

    registry.timers.due = counting
    return taken


def test_wheel_gives_due_items_earliest_first_in_bounded_steps():
    wheel = DeadlineWheel(0.1)
    for i, when in enumerate([5.0, 1.0, 3.0, 1.05, 9.0]):
        wheel.add(i, when)
    assert wheel.due(0.5, 10) == []
    assert wheel.due(3.0, 1) == [1]
    assert wheel.pending(3.0)
    assert wheel.due(3.0, 10) == [3, 2]
    assert not wheel.pending(3.0)
    assert len(wheel) == 2
    # Filed at a time already taken: goes to the next bucket, never lost.
    wheel.add("late", 2.0, now=3.0)
    assert wheel.due(3.0, 10) == []
    assert wheel.due(3.1, 10) == ["late"]
    # A clock that jumps far ahead still finds everything.
    assert wheel.due(1e7, 10) == [0, 4]
    assert len(wheel) == 0 and not wheel.pending(1e7)


def test_an_item_due_now_comes_out_now_whatever_the_float_rounding():
    # 5.1 / 0.05 is 101.99999999999999 in floating point: the deadline 0.1 + 5.0 is
    # due at the clock's 0.1 + 4.9 + 0.1, though the two quotients round apart.
    wheel = DeadlineWheel(0.05)
    wheel.add("ann", 0.1 + 5.0)
    now = 0.0
    for step in (0.1, 4.9, 0.1):
        now += step
    assert now >= 0.1 + 5.0
    assert wheel.due(now, 10) == ["ann"]


def test_sweep_looks_only_at_due_sessions():
    clock, registry, sessions = registry_with(500)
    taken = count_looked_at(registry)
    clock.advance(1.0)
    registry.sweep()
    assert sum(taken) == 0  # nobody is due a second after logging in
    clock.advance(1.0)
    registry.sweep()
    assert sum(taken) == 500  # keepalives due: every session once
    assert len(registry.transport.sent) == 500


def test_bounded_steps_do_all_the_work_without_one_block():
    clock, registry, sessions = registry_with(1000)
    taken = count_looked_at(registry)
    clock.advance(2.0)
    steps = 0
    while registry.sweep(limit=100):
        steps += 1
        assert steps < 100
    assert max(taken) <= 100
    # Every due keepalive went out, once each.
    addresses = [address for _, address in registry.transport.sent]
    assert sorted(addresses) == sorted(s.address for s in sessions)


def test_keepalives_due_at_once_are_spread_over_steps():
    clock, registry, sessions = registry_with(2000)
    clock.advance(2.0)
    per_tick = []
    for _ in range(20):
        while registry.sweep(limit=10000):
            pass
        per_tick.append(len(registry.transport.sent))
        registry.transport.sent.clear()
        clock.advance(registry.timer_resolution)
    # The share per tick is twice the average rate: 2 * 2000 * 0.1 s / 2 s + 1,
    # so 2000 keepalives due at once leave over ten ticks (1 s), not in one.
    assert per_tick[:10] == [201] * 9 + [2000 - 9 * 201]
    assert sum(per_tick) == 2000


def test_timeouts_are_exact_and_never_late():
    clock, registry, sessions = registry_with(300)
    clock.advance(9.999)
    registry.sweep()
    assert len(registry) == 300
    clock.advance(0.001)
    registry.sweep()
    assert len(registry) == 0
    assert registry.stats.logouts["timeout"] == 300


def test_traffic_postpones_the_check_it_does_not_cost_one_per_datagram():
    clock, registry, [session] = registry_with(1)
    taken = count_looked_at(registry)
    for _ in range(20):
        clock.advance(0.5)
        session.last_seen = clock.seconds()  # as an authenticated datagram does
        session.send(Kind.DATA, b"reply")  # and its reply
        registry.sweep()
    assert session.ended is None
    # Looked at about once per keepalive interval (10 s / 2 s), not per datagram or tick.
    assert sum(taken) <= 6
    assert [a for _, a in registry.transport.sent] == [session.address] * 20


def test_ended_sessions_leave_the_timers():
    clock, registry, sessions = registry_with(10)
    for session in sessions[:5]:
        registry.end(session, "logout")
    clock.advance(2.0)
    registry.sweep()
    assert len(registry.transport.sent) == 5 + 0  # keepalives only to the live five
    clock.advance(10.0)
    registry.sweep()
    assert len(registry.timers) == 0


def test_sweep_service_runs_steps_on_its_clock_until_the_work_is_done():
    clock, registry, sessions = registry_with(1000)
    service = SweepService(registry, clock, limit=100)
    service.startService()
    taken = count_looked_at(registry)
    clock.advance(2.0)
    ticks = 0
    while len(registry.transport.sent) < 1000 and ticks < 50:
        clock.advance(0)  # the next reactor turn
        ticks += 1
    assert len(registry.transport.sent) == 1000
    assert max(taken) <= 100
    service.stopService()
    assert not clock.getDelayedCalls()
