"""Knock guards an audit found never run (issue 18): the version byte of an
authenticated knock, the replay cache expiring only what went stale, and the
nft gate's bounded queue of grants and its failed nft runs."""

from twisted.internet.error import ProcessTerminated
from twisted.python.failure import Failure

from gamesession.knock import firewall
from gamesession.knock import rule as k

SECRET = bytes(range(32))
HOST = "192.0.2.1"
PORT = 7101
NONCE = bytes(range(16))


def knock_with_version(version):
    header = k.HEADER.pack(version, 0, 1700000000, NONCE)
    return header + k.knock_mac(SECRET, HOST, PORT, header)


def test_a_knock_of_another_version_is_refused_even_with_a_good_mac():
    assert k.verify_knock(SECRET, HOST, PORT, knock_with_version(k.VERSION)) == \
        k.AuthKnock(0, 1700000000, NONCE)
    for version in (0, k.VERSION + 1, 255):
        assert k.verify_knock(SECRET, HOST, PORT, knock_with_version(version)) is None
    knocker = k.Knocker([PORT], secret=SECRET)
    result = knocker.knock(HOST, PORT, knock_with_version(k.VERSION + 1), 1700000000)
    assert result.granted is None and knocker.stats["bad_mac"] == 1
    assert len(knocker.replay) == 0  # a refused knock takes no cache slot


def test_the_replay_cache_expires_only_the_stale_prefix():
    cache = k.ReplayCache(10)
    for i, expires in enumerate([10.0, 20.0, 30.0]):
        cache.add(bytes([i]) * 16, expires)
    cache.expire(20.0)  # exactly at its expiry an entry stays
    assert [cache.seen(bytes([i]) * 16) for i in range(3)] == [False, True, True]
    cache.expire(20.5)
    assert [cache.seen(bytes([i]) * 16) for i in range(3)] == [False, False, True]
    assert len(cache) == 1 and cache.floor == float("-inf")  # expiry never raises the floor
    cache.expire(31.0)
    assert len(cache) == 0


def test_a_replay_is_still_refused_after_a_partial_expiry():
    knocker = k.Knocker([PORT, PORT + 1], secret=SECRET, skew=30.0)
    first = k.encode_knock(SECRET, HOST, PORT, 0, 1000, b"a" * 16)
    later = k.encode_knock(SECRET, HOST, PORT, 0, 1020, b"b" * 16)
    knocker.knock(HOST, PORT, first, 1000.0)
    knocker.knock(HOST, PORT, later, 1020.0)
    knocker.expire(1040.0)  # first (expires 1030) goes, later (1050) stays
    assert len(knocker.replay) == 1
    knocker.knock(HOST, PORT, later, 1045.0)
    assert knocker.stats["replayed"] == 1
    # The expired one is refused as stale by its timestamp, not let through.
    knocker.knock(HOST, PORT, first, 1040.0)
    assert knocker.stats["stale"] == 1


def test_an_evicted_nonce_is_refused_as_stale_not_replayed():
    knocker = k.Knocker([PORT], secret=SECRET, skew=30.0, max_tracked=1)
    first = k.encode_knock(SECRET, HOST, PORT, 0, 1000, b"a" * 16)
    knocker.knock(HOST, PORT, first, 1000.0)
    knocker.knock(HOST, PORT, k.encode_knock(SECRET, HOST, PORT, 0, 1001, b"b" * 16), 1001.0)
    assert knocker.stats["replay_evicted"] == 1
    granted = knocker.stats["grants"]
    assert knocker.knock(HOST, PORT, first, 1002.0).granted is None
    assert knocker.stats["stale"] == 1 and knocker.stats["grants"] == granted


# -- the nft gate: a bounded queue, and failures counted -------------------------------

class ProcessReactor:
    """Records spawnProcess calls; the test ends each process by hand."""

    def __init__(self):
        self.spawned = []  # (protocol, argv)

    def spawnProcess(self, protocol, executable, args=(), env=None, path=None, *a, **kw):
        self.spawned.append((protocol, list(args)))
        protocol.makeConnection(None)
        return None

    def finish(self, index, code=0, stderr=b""):
        protocol, _ = self.spawned[index]
        if stderr:
            protocol.errReceived(stderr)
        if code == 0:
            from twisted.internet.error import ProcessDone
            protocol.processEnded(Failure(ProcessDone(0)))
        else:
            protocol.processEnded(Failure(ProcessTerminated(exitCode=code)))


def running_gate():
    reactor = ProcessReactor()
    gate = firewall.NftFirewall(7000, nft="nft", reactor=reactor)
    gate.running = True  # started without running nft: the ruleset is not under test here
    return gate, reactor


def test_grants_beyond_the_queue_bound_are_dropped_and_counted():
    gate, reactor = running_gate()
    gate.grant("192.0.2.1", 30)  # goes out at once, in flight
    assert len(reactor.spawned) == 1
    for i in range(firewall.MAX_PENDING + 5):
        gate.grant("10.0.{}.{}".format(i // 250, i % 250), 30)
    assert gate.dropped == 5 and len(gate._pending) == firewall.MAX_PENDING
    reactor.finish(0)
    # The queue drains in batches of BATCH grants per nft run.
    assert len(reactor.spawned) == 2
    script = reactor.spawned[1][1][-1]
    assert script.count("timeout 30s") == firewall.BATCH


def test_a_failed_nft_run_is_counted_and_the_next_batch_still_goes():
    gate, reactor = running_gate()
    gate.grant("192.0.2.1", 30)
    gate.grant("192.0.2.2", 30)
    reactor.finish(0, code=1, stderr=b"Error: Could not process rule")
    assert gate.failures == 1
    assert len(reactor.spawned) == 2 and "192.0.2.2" in reactor.spawned[1][1][-1]
    reactor.finish(1)
    assert gate.failures == 1 and gate._busy is False
    gate.grant("192.0.2.3", 30)  # not stuck busy: goes out at once
    assert len(reactor.spawned) == 3


def test_no_nft_run_after_the_gate_stopped():
    gate, reactor = running_gate()
    gate.grant("192.0.2.1", 30)
    gate.grant("192.0.2.2", 30)
    gate.running = False
    reactor.finish(0)
    assert len(reactor.spawned) == 1 and gate._busy is False
