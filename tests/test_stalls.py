"""The --stall-probe timer measures how long the reactor was held (task.Clock time)."""

from twisted.internet import task

from gamesession.ops.stalls import StallProbe
from gamesession.ops.stats import ServerStats


def test_lateness_of_the_probe_is_the_stall():
    clock = task.Clock()
    stats = ServerStats()
    probe = StallProbe(clock, stats, interval=0.002)
    probe.start()
    for _ in range(10):
        clock.advance(0.002)  # on time: no stall
    assert stats.max_stall == 0.0
    assert stats.stalls.counts[0] == 10
    clock.advance(0.030)  # the reactor held for 30 ms: the probe fires 28 ms late
    assert abs(stats.max_stall - 0.028) < 1e-9
    assert stats.stalls.count == 11
    assert stats.stalls.counts[stats.stalls.bounds.index(0.03)] == 1
    probe.stop()
    assert not clock.getDelayedCalls()
