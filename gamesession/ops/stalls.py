"""How long the reactor goes without turning: a probe for ``--stall-probe``.

A timer due every ``interval`` seconds cannot fire while the reactor is
busy in one piece of work (a long read loop, a sweep over every session), so
how late it fires is how long the reactor was held: the stall.  Each
lateness goes into ``stats.stalls`` (fixed buckets, a Prometheus histogram
on ``--metrics``) and the longest into ``stats.max_stall``.  Off by default:
a timer every few milliseconds costs an idle server its sleep.
"""

STALL_BOUNDS = (0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5)
DEFAULT_INTERVAL = 0.002


class StallProbe:
    """Measure reactor stalls on ``clock`` (an ``IReactorTime``) into ``stats``."""

    def __init__(self, clock, stats, interval: float = DEFAULT_INTERVAL):
        self.clock = clock
        self.stats = stats
        self.interval = interval
        self._call = None
        self._due = None

    def start(self) -> None:
        if self._call is None:
            self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._fired)

    def _fired(self) -> None:
        late = max(0.0, self.clock.seconds() - self._due)
        stats = self.stats
        stats.stalls.observe(late)
        if late > stats.max_stall:
            stats.max_stall = late
        self._schedule()
