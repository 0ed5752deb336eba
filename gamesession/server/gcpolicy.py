"""Garbage collection that does not stall the game: freeze what survived, collect fully now and then.

CPython's full collection walks every object the collector tracks.  With
tens of thousands of sessions that is tens of milliseconds (about 88 ms at
19,000 sessions, measured in-process) during which no datagram is served,
and CPython starts one whenever the tracked heap has grown by a quarter:
after every burst of logins, in a burst of logins several times.

The policy (``--gc-freeze-interval``, ``--gc-full-interval``):

* every ``freeze_interval`` seconds, collect the two young generations (cheap:
  only what was allocated lately) and freeze what survived (``gc.freeze``:
  moved to the permanent generation, which no collection walks), so the
  automatic collections only ever walk what was allocated since;
* every ``full_interval`` seconds, unfreeze, collect everything and freeze
  again: one pause of the old size, at a rate the operator chooses.

What freezing can cost: a garbage cycle among frozen objects (one that was
alive when frozen and died later) is not freed until the next full
collection, so ``full_interval`` bounds how long such garbage lives.
Objects freed by reference counting are freed at once, frozen or not.
"""

import gc as _gc
import time

DEFAULT_FREEZE_INTERVAL = 1.0
DEFAULT_FULL_INTERVAL = 600.0


class GarbagePolicy:
    """Run the policy on ``clock`` (an ``IReactorTime``); ``gc`` is injectable for tests.

    ``freeze_interval`` 0 turns the policy off (CPython's collector as is).
    ``freezes``, ``full_collections``, ``longest_full`` (seconds) and
    ``collected`` (objects a full collection freed) say what it did.
    """

    def __init__(self, clock, freeze_interval=DEFAULT_FREEZE_INTERVAL,
                 full_interval=DEFAULT_FULL_INTERVAL, gc=_gc, timer=time.perf_counter, log=None):
        self.clock = clock
        self.freeze_interval = freeze_interval
        self.full_interval = full_interval
        self.gc = gc
        self.timer = timer
        self.log = log
        self.freezes = 0
        self.full_collections = 0
        self.longest_full = 0.0
        self.collected = 0
        self._calls = {}

    def start(self) -> None:
        """Schedule the policy (if it is on); the startup heap is frozen by the server itself."""
        if self.freeze_interval > 0:
            self._schedule("freeze", self.freeze_interval, self.freeze)
            if self.full_interval > 0:
                self._schedule("full", self.full_interval, self.full)

    def stop(self) -> None:
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls = {}

    def _schedule(self, name, delay, method):
        self._calls[name] = self.clock.callLater(delay, self._run, name, delay, method)

    def _run(self, name, delay, method):
        try:
            method()
        finally:
            self._schedule(name, delay, method)

    def freeze(self) -> None:
        """Collect the young generations, then freeze what survived."""
        self.gc.collect(1)
        self.gc.freeze()
        self.freezes += 1

    def full(self) -> None:
        """Unfreeze, collect everything, freeze again; the pause is measured."""
        started = self.timer()
        self.gc.unfreeze()
        collected = self.gc.collect()
        self.gc.freeze()
        took = self.timer() - started
        self.full_collections += 1
        self.collected += collected
        self.longest_full = max(self.longest_full, took)
        if self.log is not None:
            self.log.info("full garbage collection: {collected} objects freed in {ms:.1f} ms",
                          collected=collected, ms=took * 1000, event="gc_full")
