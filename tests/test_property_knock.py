"""Property tests of the knock core (gamesession.knock.rule): random and hostile knocks.

Random datagrams never grant, never get a reply, never raise and never grow
the tables past their cap; one address's knocks never change another's
progress; authenticated knocks that were tampered with, replayed, or sent
from another address are refused.  Any reply is never larger than its request.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamesession.knock import rule as K

from conftest import examples

pytestmark = pytest.mark.timeout(300)

SETTINGS = settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEQUENCE = (7101, 7102, 7103, 7104)
SECRET = bytes(range(32))
hosts = st.sampled_from(["192.0.2.1", "192.0.2.2", "198.51.100.7", "::ffff:192.0.2.1", "2001:db8::1"])
ports = st.sampled_from(SEQUENCE + (7100, 7105, 9))


@SETTINGS
@given(knocks=st.lists(st.tuples(hosts, ports, st.binary(max_size=120)), max_size=60),
       times=st.lists(st.floats(0, 50), min_size=60, max_size=60))
def test_random_datagrams_to_an_authenticated_gate_never_grant(knocks, times):
    knocker = K.Knocker(SEQUENCE, secret=SECRET, max_tracked=4, reply_port=7000)
    now = 1_000_000.0
    for (host, port, data), step in zip(knocks, times):
        now += step
        result = knocker.knock(host, port, data, now)
        assert result.granted is None and result.reply is None
        assert len(knocker.replay) == 0  # nothing unauthenticated takes a cache slot
        assert not knocker.allows(host, now)


@SETTINGS
@given(knocks=st.lists(st.tuples(st.integers(0, 300), ports), max_size=300))
def test_tables_stay_bounded_under_many_addresses(knocks):
    knocker = K.Knocker(SEQUENCE, max_tracked=16, reply_port=7000)
    for i, (n, port) in enumerate(knocks):
        knocker.knock("10.0.{}.{}".format(n // 256, n % 256), port, b"\x00", float(i))
        assert len(knocker.progress) <= 16 and len(knocker.grants) <= 16


# Alice's knocks: runs of the sequence's first ports (so she gets far), and strays.
own_knocks = st.lists(st.one_of(st.integers(1, len(SEQUENCE)).map(lambda n: list(SEQUENCE[:n])),
                                ports.map(lambda p: [p])),
                      max_size=8).map(lambda runs: [p for run in runs for p in run])


@SETTINGS
@given(own=own_knocks,
       noise=st.lists(st.tuples(hosts, ports), max_size=30), seed=st.integers(0, 2**32))
def test_other_addresses_never_change_ones_progress(own, noise, seed):
    """Alice's progress after every knock, her grants and her access are the
    same with or without others knocking in between."""
    def run(with_noise):
        knocker = K.Knocker(SEQUENCE, max_tracked=1000)
        rnd = random.Random(seed)
        outcomes = []
        others = [(h, p) for h, p in noise if K.canonical_host(h) != "203.0.113.9"]
        queue = list(others)
        for i, port in enumerate(own):
            while with_noise and queue and rnd.random() < 0.6:
                host, other_port = queue.pop()
                knocker.knock(host, other_port, b"\x00", float(i))
            granted = knocker.knock("203.0.113.9", port, b"\x00", float(i)).granted
            outcomes.append((granted, knocker.progress.position("203.0.113.9")))
        return outcomes, knocker.allows("203.0.113.9", float(len(own)))

    assert run(False) == run(True)


def sequence_knocks(host, now, secret=SECRET):
    rng = random.Random(host)
    return list(K.make_client_knocks(SEQUENCE, secret, host, now,
                                     nonce=lambda n: rng.randbytes(n)))


def test_the_honest_authenticated_sequence_grants():
    knocker = K.Knocker(SEQUENCE, secret=SECRET, reply_port=7000)
    results = [knocker.knock("192.0.2.1", port, data, 1000.0)
               for port, data in sequence_knocks("192.0.2.1", 1000.0)]
    assert results[-1].granted == "192.0.2.1"
    assert len(results[-1].reply) <= len(sequence_knocks("192.0.2.1", 1000.0)[-1][1])


@SETTINGS
@given(which=st.integers(0, len(SEQUENCE) - 1), bit=st.integers(0, K.AUTH_KNOCK_BYTES * 8 - 1),
       how=st.sampled_from(["flip", "other_host", "other_secret", "truncate"]))
def test_tampered_authenticated_knocks_are_refused(which, bit, how):
    knocker = K.Knocker(SEQUENCE, secret=SECRET, reply_port=7000)
    host = "192.0.2.1"
    knocks = sequence_knocks(host, 1000.0)
    if how == "other_secret":
        knocks[which] = sequence_knocks(host, 1000.0, secret=bytes(32))[which]
    port, data = knocks[which]
    if how == "flip":
        data = bytearray(data)
        data[bit // 8] ^= 1 << (bit % 8)
        knocks[which] = (port, bytes(data))
    elif how == "truncate":
        knocks[which] = (port, data[:bit % len(data)])
    sender = "192.0.2.99" if how == "other_host" else host
    granted = []
    for i, (port, data) in enumerate(knocks):
        source = sender if i == which else host
        granted.append(knocker.knock(source, port, data, 1000.0).granted)
    assert granted == [None] * len(SEQUENCE)


@SETTINGS
@given(order=st.lists(st.integers(0, len(SEQUENCE) - 1), max_size=20), later=st.floats(0, 25))
def test_replayed_authenticated_knocks_never_grant_again(order, later):
    knocker = K.Knocker(SEQUENCE, secret=SECRET, skew=30.0)
    host = "192.0.2.1"
    knocks = sequence_knocks(host, 1000.0)
    assert [knocker.knock(host, p, d, 1000.0).granted for p, d in knocks][-1] == host
    # The attacker (on-path: same source address) replays captured knocks in any order.
    replays = [knocks[i] for i in order] + knocks
    assert all(knocker.knock(host, p, d, 1000.0 + later).granted is None for p, d in replays)
    assert knocker.stats["replayed"] >= len(replays) - knocker.stats["stale"]


@SETTINGS
@given(data=st.one_of(
    st.binary(max_size=200),
    st.binary(min_size=K.AUTH_KNOCK_BYTES, max_size=K.AUTH_KNOCK_BYTES),
    # The knock's length and version: only the MAC can refuse these.
    st.binary(min_size=K.AUTH_KNOCK_BYTES - 1, max_size=K.AUTH_KNOCK_BYTES - 1).map(
        lambda rest: bytes([K.VERSION]) + rest)),
    host=hosts, port=st.integers(0, 65535))
def test_verify_knock_never_raises(data, host, port):
    """Random bytes (of any length, the knock's own included) never verify."""
    assert K.verify_knock(SECRET, host, port, data) is None


@SETTINGS
@given(host=hosts, port=st.integers(0, 65535), position=st.integers(0, 255),
       timestamp=st.integers(0, 2**64 - 1), nonce=st.binary(min_size=16, max_size=16),
       other_port=st.integers(0, 65535))
def test_a_genuine_knock_verifies_to_its_fields_for_its_sender_and_port_only(
        host, port, position, timestamp, nonce, other_port):
    data = K.encode_knock(SECRET, host, port, position, timestamp, nonce)
    assert len(data) == K.AUTH_KNOCK_BYTES
    assert K.verify_knock(SECRET, host, port, data) == K.AuthKnock(position, timestamp, nonce)
    if other_port != port:
        assert K.verify_knock(SECRET, host, other_port, data) is None
    assert K.verify_knock(bytes(32), host, port, data) is None
    assert K.verify_knock(SECRET, "203.0.113.250", port, data) is None


@SETTINGS
@given(text=st.text(max_size=60))
def test_parse_sequence_returns_ports_or_a_clear_error(text):
    try:
        ports = K.parse_sequence(text)
    except K.KnockError as e:
        assert any(phrase in str(e) for phrase in (
            "empty knock sequence", "is not a number", "outside 1-65535", "must be unique",
            "at most"))
    else:
        assert ports == tuple(int(p) for p in text.replace(",", " ").split())


separators = st.sampled_from([",", " ", ", ", "\t", ",,", " ,\n"])
tokens = st.one_of(st.integers(-5, 70000), st.text(alphabet="abcxyz_", min_size=1, max_size=4))


@SETTINGS
@given(parts=st.lists(st.tuples(tokens, separators), max_size=12), lead=separators)
def test_parse_sequence_against_what_was_written(parts, lead):
    """Ports written with any separators parse to themselves; the first bad one
    is named; repeats and overlong sequences are refused."""
    text = lead + "".join(str(token) + sep for token, sep in parts)
    written = [token for token, _ in parts]
    first_bad = next((t for t in written if isinstance(t, str) or not 1 <= t <= 65535), None)
    try:
        ports = K.parse_sequence(text)
    except K.KnockError as e:
        message = str(e)
        if not written:
            assert "empty knock sequence" in message
        elif isinstance(first_bad, str):
            assert "knock port {!r} is not a number".format(first_bad) in message
        elif first_bad is not None:
            assert "knock port {} is outside 1-65535".format(first_bad) in message
        elif len(set(written)) != len(written):
            repeated = sorted({p for p in written if written.count(p) > 1})
            assert "repeated: " + ",".join(map(str, repeated)) in message
        else:
            assert len(written) > K.MAX_SEQUENCE and "at most" in message
    else:
        assert first_bad is None and len(set(written)) == len(written)
        assert len(written) <= K.MAX_SEQUENCE
        assert ports == tuple(written)


@SETTINGS
@given(senders=st.lists(hosts, min_size=1, max_size=12),
       sizes=st.lists(st.integers(0, 4), min_size=48, max_size=48))
def test_classic_replies_are_never_larger_than_the_knock(senders, sizes):
    """Each sender completes the whole sequence with knocks of 0-4 bytes: every
    completion is a grant, answered only when its last knock was at least as
    large as the reply, and withheld otherwise."""
    knocker = K.Knocker(SEQUENCE, reply_port=7000)
    sizes = iter(sizes)
    replies = withheld = 0
    for i, host in enumerate(senders):
        for j, port in enumerate(SEQUENCE):
            data = b"k" * next(sizes)
            result = knocker.knock(host, port, data, i + j / 10)
            if j < len(SEQUENCE) - 1:
                assert result == K.KnockResult()
                continue
            assert result.granted == K.canonical_host(host)
            if len(data) >= K.REPLY.size:
                assert result.reply == K.encode_reply(7000) and len(result.reply) <= len(data)
                replies += 1
            else:
                assert result.reply is None
                withheld += 1
    assert knocker.stats["grants"] == len(senders)
    assert (knocker.stats["replies"], knocker.stats["reply_withheld"]) == (replies, withheld)
