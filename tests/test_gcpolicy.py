"""The garbage-collection policy: young collections and freezes on a clock, a full one now and then."""

import gc

import pytest
from twisted.internet import task
from twisted.python import usage

from gamesession.server import gcpolicy, tap

from fakes import MemoryReactorUDP


class RecordingGC:
    """The four gc calls the policy makes, recorded; ``collect`` returns ``freed``."""

    def __init__(self, freed=7, fail=False):
        self.calls = []
        self.freed = freed
        self.fail = fail

    def collect(self, generation=2):
        self.calls.append(("collect", generation))
        if self.fail:
            raise RuntimeError("collector broke")
        return self.freed

    def freeze(self):
        self.calls.append(("freeze",))

    def unfreeze(self):
        self.calls.append(("unfreeze",))


def test_young_collections_and_freezes_every_interval_and_a_full_one_now_and_then():
    clock, fake = task.Clock(), RecordingGC()
    times = iter([1.0, 1.025, 2.0, 2.5])
    policy = gcpolicy.GarbagePolicy(clock, freeze_interval=10, full_interval=30, gc=fake,
                                    timer=lambda: next(times))
    policy.start()
    assert fake.calls == []  # the startup heap is the server's (tap.freeze_startup_heap)
    clock.advance(9.9)
    assert fake.calls == []
    clock.advance(0.1)
    assert fake.calls == [("collect", 1), ("freeze",)]
    fake.calls.clear()
    clock.pump([10, 10])  # t = 30: a freeze and the full collection
    assert fake.calls.count(("collect", 1)) == 2
    at = fake.calls.index(("unfreeze",))
    assert fake.calls[at:at + 3] == [("unfreeze",), ("collect", 2), ("freeze",)]
    assert policy.freezes == 3 and policy.full_collections == 1
    assert policy.collected == 7 and policy.longest_full == pytest.approx(0.025)
    clock.pump([10, 10, 10])
    assert policy.full_collections == 2 and policy.longest_full == pytest.approx(0.5)
    policy.stop()
    fake.calls.clear()
    clock.advance(1000)
    assert fake.calls == [] and clock.getDelayedCalls() == []


def test_off_means_cpythons_own_collector():
    clock, fake = task.Clock(), RecordingGC()
    gcpolicy.GarbagePolicy(clock, freeze_interval=0, full_interval=30, gc=fake).start()
    assert clock.getDelayedCalls() == []
    policy = gcpolicy.GarbagePolicy(clock, freeze_interval=5, full_interval=0, gc=fake)
    policy.start()
    clock.pump([5] * 20)
    assert policy.freezes == 20 and policy.full_collections == 0
    assert ("unfreeze",) not in fake.calls


def test_a_failing_collection_is_not_the_end_of_the_policy():
    clock, fake = task.Clock(), RecordingGC(fail=True)
    policy = gcpolicy.GarbagePolicy(clock, freeze_interval=1, full_interval=0, gc=fake)
    policy.start()
    for _ in range(3):
        with pytest.raises(RuntimeError):
            clock.advance(1)
    assert fake.calls.count(("collect", 1)) == 3 and len(clock.getDelayedCalls()) == 1


def test_the_real_collector_freezes_and_a_full_collection_frees_a_frozen_cycle():
    clock = task.Clock()
    policy = gcpolicy.GarbagePolicy(clock, freeze_interval=1, full_interval=0)
    gc.collect()
    try:
        frozen = gc.get_freeze_count()
        cycle = [object()]
        cycle.append(cycle)
        policy.freeze()
        assert gc.get_freeze_count() > frozen
        del cycle  # died frozen: no automatic collection sees it
        assert gc.collect() == 0
        policy.full()
        assert policy.collected >= 1 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_options_reach_the_policy(tmp_path):
    options = tap.Options()
    options.parseOptions(["--key-file", str(tmp_path / "k"), "--gc-freeze-interval", "5",
                          "--gc-full-interval", "0"])
    service = tap.makeService(options, MemoryReactorUDP())
    assert (service.gc_policy.freeze_interval, service.gc_policy.full_interval) == (5.0, 0.0)
    defaults = tap.Options()
    defaults.parseOptions(["--key-file", str(tmp_path / "k")])
    assert (defaults["gc-freeze-interval"], defaults["gc-full-interval"]) == (1.0, 600.0)
    for bad in (["--gc-freeze-interval", "-1"], ["--gc-full-interval", "soon"]):
        with pytest.raises(usage.UsageError):
            tap.Options().parseOptions(bad)
