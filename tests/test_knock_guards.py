"""Knock guards an audit found never run (issue 18): the version byte of an
authenticated knock, the replay cache expiring only what went stale, and the
nft gate's bounded queue of grants and its failed nft runs."""

import base64
import collections
import random

import pytest
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
    # The version byte is a cheap check, made before the MAC: a bad format.
    assert result.granted is None and knocker.stats["bad_format"] == 1
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


# -- edges the mutation run found unpinned (docs/testing.md) ----------------------------------

def test_the_knockers_counters_add_up():
    knocker = k.Knocker([PORT, PORT + 1], window=5.0, grant=10.0, secret=SECRET)
    wrong = k.encode_knock(SECRET, HOST, PORT, 1, 100, b"w" * 16)  # position 1 at port 0
    knocker.knock(HOST, PORT, wrong, 100.0)
    knocker.knock(HOST, PORT, k.encode_knock(SECRET, HOST, PORT, 1, 100, b"x" * 16), 100.0)
    for nonce, port, position in ((b"a", PORT, 0), (b"b", PORT + 1, 1)):
        data = k.encode_knock(SECRET, HOST, port, position, 100, nonce * 16)
        knocker.knock(HOST, port, data, 100.0)
    knocker.knock("192.0.2.9", PORT, k.encode_knock(SECRET, "192.0.2.9", PORT, 0, 100,
                                                     b"c" * 16), 100.0)
    assert [knocker.allows(HOST, 101.0), knocker.allows(HOST, 102.0)] == [True, True]
    assert [knocker.allows("192.0.2.9", 101.0), knocker.allows("192.0.2.8", 101.0)] == \
        [False, False]
    assert knocker.allows(HOST, 110.0) is False  # the grant ran out: expired on asking
    knocker.grants.grant("192.0.2.7", 100.0)
    knocker.grants.grant("192.0.2.6", 100.0)
    knocker.expire(110.0)  # both grants and 192.0.2.9's progress go here
    expected = {"knocks": 5, "wrong_position": 2, "advanced": 1, "started": 2, "grants": 1,
                "allowed_connections": 2, "rejected_connections": 3, "grants_expired": 3,
                "progress_expired": 1}
    assert dict(knocker.stats) == expected


def test_replay_cache_add_says_whether_it_evicted():
    cache = k.ReplayCache(1)
    assert cache.add(b"a" * 16, 10.0) is False
    assert cache.add(b"b" * 16, 20.0) is True
    assert not cache.seen(b"a" * 16)
    assert not cache.fresh(10.0) and cache.fresh(10.5)  # the sender's floor rose


def test_is_monotonic_for_two_ports_and_more():
    assert k.is_monotonic((7101,)) is False
    assert k.is_monotonic((7101, 7102)) is True and k.is_monotonic((7102, 7101)) is True
    assert k.is_monotonic((7101, 7103, 7102)) is False


def test_random_sequences_span_1025_to_2024_inclusive():
    seen = set()
    for seed in range(60):
        seen.update(k.random_sequence(100, random.Random(seed)))
    assert min(seen) == k.RANDOM_LOW == 1025 and max(seen) == k.RANDOM_HIGH == 2024


def test_classic_client_knocks_are_one_zero_byte():
    assert list(k.make_client_knocks([7101, 7102], None, HOST, 0.0)) == \
        [(7101, b"\x00"), (7102, b"\x00")]


def test_secret_and_file_errors_are_exact(tmp_path):
    good = bytes(range(32))
    b64 = base64.b64encode(good).decode()
    assert k.parse_secret(b64) == good
    with pytest.raises(k.KnockError) as info:
        k.parse_secret(b64[:10] + "!" + b64[10:])  # not base64: refused, not skipped over
    assert str(info.value) == (
        "a knock secret is 32 bytes written as 64 hex digits or base64;"
        " create one with `gamesession knock-secret --file PATH`")
    path = tmp_path / "secret"
    path.write_bytes(b"\xff\xfe not ascii\n")
    with pytest.raises(k.KnockError) as info:
        k.load_secret(str(path))
    assert str(info.value).startswith("knock secret {}: a knock secret is 32 bytes".format(path))
    with pytest.raises(k.KnockError) as info:
        k.knock_mac(SECRET, "not-an-address", PORT, b"")
    assert str(info.value) == "authenticated knocks need an IP address, not 'not-an-address'"
    with pytest.raises(ValueError) as info:
        k.encode_knock(SECRET, HOST, PORT, 0, 0, b"short")
    assert str(info.value) == "nonce must be 16 bytes"


def test_expiries_are_counted_one_each():
    stats = collections.Counter()
    grants = k.Grants(10.0, 100, stats)
    grants.grant("a", 0.0)
    grants.grant("b", 0.0)
    assert grants.allows("a", 10.0) is False and grants.allows("b", 10.0) is False
    assert stats["grants_expired"] == 2
    progress = k.ProgressTracker((PORT, PORT + 1), 5.0, 100, stats)
    progress.knock("a", PORT, 0.0)
    progress.knock("b", PORT, 0.0)
    progress.expire(6.0)
    assert stats["progress_expired"] == 2 and len(progress) == 0


def test_knock_rule_errors_are_exact():
    with pytest.raises(k.KnockError) as info:
        k.parse_sequence(" , ")
    assert str(info.value) == "empty knock sequence: give ports like 7101,7102,7103"
    with pytest.raises(k.KnockError) as info:
        k.parse_sequence("7101,7102,7101,7103,7102")
    assert str(info.value) == "knock ports must be unique; repeated: 7101,7102"
    longest = ",".join(str(1000 + i) for i in range(k.MAX_SEQUENCE))
    assert len(k.parse_sequence(longest)) == k.MAX_SEQUENCE
    with pytest.raises(k.KnockError) as info:
        k.parse_sequence(longest + ",9999")
    assert str(info.value) == "knock sequence has 256 ports; at most 255 are allowed"
    with pytest.raises(k.KnockError) as info:
        k.Knocker([])
    assert str(info.value) == "a knock sequence needs at least one port"
    with pytest.raises(k.KnockError) as info:
        k.Knocker([PORT], max_tracked=0)
    assert str(info.value) == "--knock-max-tracked must be at least 1"


def test_a_scoped_ipv6_address_loses_its_zone():
    assert k.canonical_host("fe80::1%eth0") == "fe80::1"
    assert k.canonical_host("::ffff:192.0.2.1") == "192.0.2.1"


def test_progress_counters_add_up():
    stats = collections.Counter()
    progress = k.ProgressTracker((7101, 7102, 7103), 5.0, 100, stats)
    for host in ("a", "b"):
        progress.knock(host, 7101, 0.0)
        progress.knock(host, 7102, 0.0)  # advanced
        progress.knock(host, 7101, 0.0)  # restarted
        progress.knock(host, 7103, 0.0)  # out of order
        progress.knock(host, 7101, 0.0)
        progress.knock(host, 7102, 9.0)  # too late: expired on the knock, then a stray
    assert (stats["advanced"], stats["restarted"], stats["out_of_order"],
            stats["progress_expired"]) == (2, 2, 2, 2)
