"""The sans-I/O knock core: sequences, the progress rule, grants, MACs."""

import os
import pathlib
import random
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamesession.knock import rule as k

SEQ = (7101, 7102, 7103)
A = "198.51.100.7"
B = "203.0.113.9"

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "knocking.md"

# The test vector of docs/knocking.md.
VEC_SECRET = bytes(range(32))
VEC_HOST = "192.0.2.1"
VEC_PORT = 7101
VEC_POSITION = 0
VEC_TIMESTAMP = 1700000000
VEC_NONCE = bytes(range(16))
VEC_KNOCK = (
    "0100000000006553f100000102030405060708090a0b0c0d0e0f"
    "02cedd6e14bcdd49fa804fa33b9189bf633562b5268befebedad2a5274234a12"
)


def knocker(**kw):
    return k.Knocker(SEQ, **kw)


def send(kn, host, ports, now=0.0, data=b"\x00"):
    results = [kn.knock(host, p, data, now) for p in ports]
    return results[-1]


# -- parsing -----------------------------------------------------------------


def test_parse_sequence():
    assert k.parse_ports("7101,7102,7103") == SEQ
    assert k.parse_ports(" 7101, 7102\n7103 ") == SEQ


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("7101,x", "not a number"),
        ("0,7101", "outside 1-65535"),
        ("7101,65536", "outside 1-65535"),
        ("7101,7102,7101", "unique"),
        (",".join(str(p) for p in range(2000, 2256)), "at most 255"),
    ],
)
def test_parse_sequence_errors(text, message):
    with pytest.raises(k.KnockError, match=message):
        k.parse_ports(text)


def test_sequence_file_roundtrip(tmp_path):
    path = tmp_path / "knock.txt"
    path.write_text("junk that is longer than the new content\n")
    os.chmod(path, 0o644)
    k.write_sequence_file(str(path), SEQ)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == "7101,7102,7103\n"
    assert k.parse_ports("@" + str(path)) == SEQ


def test_sequence_file_missing(tmp_path):
    with pytest.raises(k.KnockError, match="cannot read knock file"):
        k.parse_ports("@" + str(tmp_path / "nope"))


def test_random_sequence():
    seq = k.random_sequence(100, random.Random(1))
    assert len(set(seq)) == 100
    assert all(1025 <= p <= 2024 for p in seq)
    assert k.random_sequence(10, random.Random(5)) == k.random_sequence(10, random.Random(5))
    for bad in (9, 101):
        with pytest.raises(k.KnockError, match="10 to 100"):
            k.random_sequence(bad, random.Random(1))


def test_monotonic():
    assert k.is_monotonic(SEQ)
    assert k.is_monotonic(SEQ[::-1])
    assert not k.is_monotonic((7102, 7101, 7103))
    assert not k.is_monotonic((7101,))


@given(st.lists(st.integers(1, 65535), min_size=1, max_size=255, unique=True))
def test_parse_roundtrip_property(ports):
    assert k.parse_ports(",".join(map(str, ports))) == tuple(ports)
    assert k.parse_ports(" ".join(map(str, ports))) == tuple(ports)


# -- the progress rule -------------------------------------------------------


def test_no_knock_no_entry():
    kn = knocker()
    assert not kn.allows(A, 0.0)
    assert kn.stats["rejected_connections"] == 1


def test_full_sequence_grants_only_that_address():
    kn = knocker()
    result = send(kn, A, SEQ)
    assert result.granted == A
    assert kn.allows(A, 1.0)
    assert not kn.allows(B, 1.0)
    assert kn.stats["grants"] == 1
    assert len(kn.progress) == 0  # completed progress is not kept


def test_ipv4_mapped_peer_matches_udp_grant():
    kn = knocker()
    send(kn, A, SEQ)
    assert kn.allows("::ffff:" + A, 1.0)


def test_wrong_order_does_not_complete():
    kn = knocker()
    assert send(kn, A, (7101, 7103, 7102)).granted is None
    assert kn.stats["out_of_order"] == 1
    assert not kn.allows(A, 1.0)


def test_partial_sequence():
    kn = knocker()
    send(kn, A, SEQ[:2])
    assert kn.progress.position(A) == 2
    assert not kn.allows(A, 0.5)


def test_duplicates_and_stray_ports_keep_progress():
    kn = knocker()
    ports = (7101, 7101, 9999, 7102, 7102, 7102, 4444, 7103)
    assert send(kn, A, ports).granted == A
    assert kn.stats["duplicate"] == 3
    assert kn.stats["stray"] == 2


def test_stray_before_start_is_ignored():
    kn = knocker()
    send(kn, A, (7102, 7103))
    assert len(kn.progress) == 0
    assert kn.stats["stray"] == 2


def test_first_port_restarts_so_resending_the_whole_sequence_works():
    kn = knocker()
    send(kn, A, (7101, 7102))  # 7103 lost
    assert send(kn, A, SEQ, now=3.0).granted == A
    assert kn.stats["restarted"] == 1


def test_resend_after_lost_middle_knock():
    kn = knocker()
    send(kn, A, (7101, 7103))  # 7102 lost: 7103 is out of order
    assert not kn.allows(A, 0.1)
    assert send(kn, A, SEQ, now=1.0).granted == A


def test_other_address_cannot_advance_or_reset():
    kn = knocker()
    send(kn, A, (7101, 7102))
    send(kn, B, (7101, 7103, 7102))
    assert kn.progress.position(A) == 2
    assert send(kn, A, (7103,)).granted == A
    assert not kn.allows(B, 0.0)


def test_window_expiry():
    kn = knocker(window=10)
    send(kn, A, (7101, 7102), now=0.0)
    assert send(kn, A, (7103,), now=10.5).granted is None
    assert kn.stats["progress_expired"] == 1
    send(kn, A, (7101, 7102), now=20.0)
    assert send(kn, A, (7103,), now=30.0).granted == A  # exactly the window is fine


def test_stale_progress_restarts_on_first_port():
    kn = knocker(window=10)
    send(kn, A, (7101, 7102), now=0.0)
    assert send(kn, A, SEQ, now=11.0).granted == A


def test_expire_drops_stale_progress_in_bulk():
    kn = knocker(window=10)
    for i in range(100):
        kn.knock(f"10.0.{i // 256}.{i % 256}", 7101, b"", float(i) / 10)
    kn.expire(15.0)
    assert len(kn.progress) == 50  # started at 5.0 .. 9.9
    kn.expire(100.0)
    assert len(kn.progress) == 0


def test_grant_expiry_and_refresh():
    kn = knocker(grant=30)
    send(kn, A, SEQ, now=0.0)
    assert kn.allows(A, 29.9)
    assert not kn.allows(A, 30.0)
    assert kn.stats["grants_expired"] == 1
    send(kn, A, SEQ, now=40.0)
    send(kn, A, SEQ, now=60.0)
    assert kn.allows(A, 89.0)
    kn.expire(90.0)
    assert len(kn.grants) == 0


def test_single_port_sequence():
    kn = k.Knocker((7101,))
    assert kn.knock(A, 7101, b"", 0.0).granted == A
    assert len(kn.progress) == 0


def test_address_cap_under_spoofed_flood():
    kn = knocker(max_tracked=1000)
    send(kn, A, (7101, 7102), now=0.0)
    for i in range(50_000):
        kn.knock(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 7101, b"", 1.0)
    assert len(kn.progress) == 1000
    assert kn.stats["evicted"] == 49_001
    assert kn.progress.position(A) == 0  # the oldest went first


def test_grant_cap():
    kn = knocker(max_tracked=10)
    for i in range(25):
        send(kn, f"10.0.0.{i}", SEQ)
    assert len(kn.grants) == 10
    assert kn.stats["grants_evicted"] == 15
    assert kn.allows("10.0.0.24", 1.0)
    assert not kn.allows("10.0.0.0", 1.0)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([7101, 7102, 7103, 9])),
        max_size=40,
    )
)
def test_grant_implies_in_order_subsequence_property(knocks):
    """A grant needs 7101, 7102, 7103 in order from that address, and the
    exact sequence from one address always completes whatever others send."""
    kn = knocker()
    mine = {"a": [], "b": []}
    for i, (host, port) in enumerate(knocks):
        mine[host].append(port)
        if kn.knock(host, port, b"", 0.0).granted:
            it = iter(mine[host])
            assert all(p in it for p in SEQ)
        if i % 3 == 0 and i // 3 < len(SEQ):
            kn.knock("c", SEQ[i // 3], b"", 0.0)
    for port in SEQ[(len(knocks) + 2) // 3 :]:
        kn.knock("c", port, b"", 0.0)
    assert kn.allows("c", 0.0)


@given(st.lists(st.sampled_from([7101, 7102, 7103, 5]), max_size=30))
def test_duplicates_never_hurt_property(extra):
    """Repeating each knock of the right sequence, with strays between, completes."""
    kn = knocker()
    granted = False
    for port in SEQ:
        for p in [port, port] + [x for x in extra if x not in SEQ]:
            granted |= kn.knock(A, p, b"", 0.0).granted == A
    assert granted


# -- replies -----------------------------------------------------------------


def test_no_reply_by_default():
    kn = knocker()
    assert send(kn, A, SEQ, data=b"xxxx").reply is None


def test_reply_never_larger_than_knock():
    kn = knocker(reply_port=7000)
    assert send(kn, A, SEQ, data=b"").reply is None  # empty knock: no reply
    assert send(kn, A, SEQ, data=b"\x00").reply is None  # stock `knock -u`
    reply = send(kn, A, SEQ, data=b"\x00\x00").reply
    assert reply == b"\x1b\x58" and k.decode_reply(reply) == 7000
    assert kn.stats["replies"] == 1 and kn.stats["reply_withheld"] == 2


def test_no_reply_for_incomplete_sequence():
    kn = knocker(reply_port=7000)
    assert send(kn, A, SEQ[:2], data=b"x" * 100).reply is None


@given(st.binary(max_size=80))
def test_reply_size_bound_property(data):
    kn = knocker(reply_port=65535)
    result = send(kn, A, SEQ, data=data)
    assert result.reply is None or len(result.reply) <= len(data)


# -- secrets -----------------------------------------------------------------


def test_secret_file(tmp_path):
    path = str(tmp_path / "secret")
    secret = k.write_secret_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert k.load_secret(path) == secret
    with pytest.raises(k.KnockError, match="exists"):
        k.write_secret_file(path)


def test_secret_formats():
    import base64

    assert k.parse_secret(VEC_SECRET.hex()) == VEC_SECRET
    assert k.parse_secret(base64.b64encode(VEC_SECRET).decode() + "\n") == VEC_SECRET
    for bad in ("", "abcd", "zz" * 32, VEC_SECRET.hex() + "00"):
        with pytest.raises(k.KnockError, match="64 hex digits"):
            k.parse_secret(bad)


# -- authenticated knocks ----------------------------------------------------


def test_vector_matches_docs():
    data = k.encode_knock(VEC_SECRET, VEC_HOST, VEC_PORT, VEC_POSITION, VEC_TIMESTAMP, VEC_NONCE)
    assert data.hex() == VEC_KNOCK
    assert len(data) == k.AUTH_KNOCK_BYTES == 58
    assert VEC_KNOCK[:52] in DOCS.read_text().replace("\n", "")
    assert VEC_KNOCK[52:] in DOCS.read_text().replace("\n", "")
    assert k.verify_knock(VEC_SECRET, VEC_HOST, VEC_PORT, data) == k.AuthKnock(
        VEC_POSITION, VEC_TIMESTAMP, VEC_NONCE
    )


def test_bound_vector_matches_docs():
    mac = "ea2b8cf52051028c64887dd30a2d4622f345629eafc74cc820094706eab383b4"
    data = k.encode_knock(VEC_SECRET, VEC_HOST, VEC_PORT, VEC_POSITION, VEC_TIMESTAMP, VEC_NONCE,
                          b"arena-7")
    assert data.hex() == VEC_KNOCK[:52] + mac
    assert mac in DOCS.read_text().replace("\n", "")
    assert k.verify_knock(VEC_SECRET, VEC_HOST, VEC_PORT, data) is None
    assert k.verify_knock(VEC_SECRET, VEC_HOST, VEC_PORT, data, b"arena-7") is not None


SECRET = bytes(range(100, 132))
NOW = 1_700_000_000.0


class Nonces:
    def __init__(self):
        self.n = 0

    def __call__(self, size):
        self.n += 1
        return self.n.to_bytes(size, "big")


def auth_knocks(host, now=NOW, secret=SECRET, nonce=None):
    return list(k.make_client_knocks(SEQ, secret, host, now, nonce or Nonces()))


def auth_knocker(**kw):
    return knocker(secret=SECRET, **kw)


def feed(kn, host, knocks, now=NOW):
    granted = None
    for port, data in knocks:
        granted = kn.knock(host, port, data, now).granted or granted
    return granted


def test_auth_valid():
    kn = auth_knocker()
    assert feed(kn, A, auth_knocks(A)) == A


def test_auth_classic_knocks_refused():
    kn = auth_knocker()
    assert send(kn, A, SEQ, now=NOW).granted is None
    assert kn.stats["bad_format"] == 3


def test_auth_replayed_knocks_do_not_count():
    kn = auth_knocker()
    knocks = auth_knocks(A)
    assert feed(kn, A, knocks) == A
    kn.grants.expire(NOW + 1000)
    assert feed(kn, A, knocks, now=NOW + 1) is None
    assert kn.stats["replayed"] == 3


def test_auth_replay_later_is_stale():
    kn = auth_knocker(skew=30)
    knocks = auth_knocks(A)
    assert feed(kn, A, knocks, now=NOW + 31) is None
    assert kn.stats["stale"] == 3
    assert feed(kn, A, auth_knocks(A, now=NOW - 30, nonce=Nonces()), now=NOW) == A


def test_auth_sniffed_knocks_from_another_address():
    kn = auth_knocker()
    assert feed(kn, B, auth_knocks(A)) is None
    assert kn.stats["bad_mac"] == 3
    assert len(kn.replay) == 0  # a bad MAC never takes a cache slot


def test_auth_tampered():
    kn = auth_knocker()
    knocks = auth_knocks(A)
    for i in range(k.AUTH_KNOCK_BYTES):
        port, data = knocks[0]
        bad = bytearray(data)
        bad[i] ^= 1
        kn.knock(A, port, bytes(bad), NOW)
    # The cheap checks (version, position, time) catch some before the MAC does.
    refused = ("bad_format", "wrong_position", "stale", "bad_mac")
    assert sum(kn.stats[r] for r in refused) == k.AUTH_KNOCK_BYTES
    assert kn.stats["bad_mac"] >= k.AUTH_KNOCK_BYTES - 8 - 2
    assert len(kn.progress) == 0 and len(kn.replay) == 0


def test_auth_wrong_key():
    kn = auth_knocker()
    assert feed(kn, A, auth_knocks(A, secret=bytes(32))) is None
    assert kn.stats["bad_mac"] == 3


def test_auth_knock_sent_to_another_port():
    kn = auth_knocker()
    (p0, d0), (p1, d1), (p2, d2) = auth_knocks(A)
    assert feed(kn, A, [(p0, d0), (p2, d1), (p2, d2)]) is None
    assert kn.stats["wrong_position"] == 1  # refused before any MAC work


def test_auth_spoofed_packets_cannot_disturb_progress():
    kn = auth_knocker()
    knocks = auth_knocks(A)
    feed(kn, A, knocks[:2])
    # Everything a spoofer can send with A's address: classic knocks, old
    # knocks replayed, knocks made for B, garbage.
    for port in SEQ:
        kn.knock(A, port, b"\x00", NOW)
        kn.knock(A, port, os.urandom(58), NOW)
    for port, data in knocks[:2] + auth_knocks(B, nonce=Nonces()):
        kn.knock(A, port, data, NOW)
    assert kn.progress.position(A) == 2
    assert feed(kn, A, knocks[2:]) == A


def test_auth_wrong_position():
    kn = auth_knocker()
    nonce = Nonces()
    data = k.encode_knock(SECRET, A, 7101, 1, int(NOW), nonce(16))
    kn.knock(A, 7101, data, NOW)
    assert kn.stats["wrong_position"] == 1
    assert len(kn.progress) == 0


def test_replay_cache_is_bounded_and_expires():
    kn = auth_knocker(max_tracked=5, skew=30)
    nonce = Nonces()
    for i in range(20):
        feed(kn, f"10.0.0.{i}", auth_knocks(f"10.0.0.{i}", now=NOW + i, nonce=nonce), now=NOW + i)
    assert len(kn.replay) == 5
    assert kn.stats["replay_evicted"] == 55
    kn.expire(NOW + 1000)
    assert len(kn.replay) == 0


def test_replay_cache_overflow_never_reopens_a_replay():
    kn = auth_knocker(max_tracked=2, skew=30)
    nonce = Nonces()
    old = auth_knocks(A, nonce=nonce)
    assert feed(kn, A, old) == A
    assert feed(kn, B, auth_knocks(B, now=NOW + 1, nonce=nonce), now=NOW + 1) == B
    assert not any(kn.replay.seen(data[10:26]) for _, data in old)  # evicted
    kn.grants.expire(NOW + 1000)
    assert feed(kn, A, old, now=NOW + 2) is None
    assert kn.stats["stale"] == 3
