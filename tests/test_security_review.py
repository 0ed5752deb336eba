"""Issue 13: what a security review broke on a real server, one test (or more) per finding.

In-memory (``fakes.Harness``, task.Clock) where the finding is
logic; a real twistd on loopback where it is about sockets and the reactor
(findings 2, 7, 9, 12).  Each test failed before its fix.
"""

import json
import logging

import pytest

from gamesession.protocol import wire
from gamesession.protocol.clientcore import ClientCore, LoginFailed
from gamesession.protocol.wire import ErrorCode, ProtocolError

from fakes import Harness, RecordingApp, error_codes, logged_events

pytestmark = pytest.mark.timeout(60)


def logged_lines(run):
    """Text of every log event emitted while ``run()`` runs."""
    from twisted.logger import formatEvent
    return [formatEvent(e) for e in logged_events(run)]


# -- 5: lone surrogates and control characters ----------------------------------------

@pytest.mark.parametrize("field", ["user", "password"])
def test_lone_surrogates_get_422_not_500(field):
    server = Harness(application=RecordingApp(), users={"alice": "pw"})
    conn = server.connect()
    login = {"user": "alice", "password": "pw"}
    login[field] = "a\ud800b"
    core = ClientCore(bytes(server.key.public_key), **login)
    conn.send(core.hello())
    [challenge] = conn.frames()
    [sealed_login], _ = core.frame_received(challenge)
    conn.send(sealed_login)
    [frame] = conn.frames()
    with pytest.raises(LoginFailed) as info:
        core.frame_received(frame)
    assert info.value.code == ErrorCode.BAD_FIELD
    assert server.stats.protocol_errors["bad_field"] == 1
    assert server.stats.logins["error"] == 0


def test_wire_refuses_lone_surrogates_in_text_fields():
    with pytest.raises(ProtocolError) as info:
        wire.text_field(json.loads('{"u": "\\udc80"}'), "u", 64)
    assert info.value.code == ErrorCode.BAD_FIELD
    assert wire.text_field({"u": "Zoë 🎮"}, "u", 64) == "Zoë 🎮"


def test_user_names_are_escaped_in_log_lines():
    server = Harness(application=RecordingApp())  # guest mode: any name logs in
    evil = "mallory\x1b[2J\r\nlogin ok: user=admin"
    lines = logged_lines(lambda: server.connect().attempt_login(evil))
    mine = [line for line in lines if "mallory" in line]
    assert mine, lines
    for line in mine:
        assert "\x1b" not in line and "\r" not in line and "\n" not in line
        assert "mallory\\x1b[2J\\r\\nlogin ok" in line
    assert server.registry.by_user[evil].user == evil  # the session keeps the real name


# -- 6: the client takes no clear frame once the channel is sealed ----------------------

def test_client_refuses_a_clear_error_after_the_handshake():
    server = Harness(application=RecordingApp())
    conn = server.connect()
    core = ClientCore(bytes(server.key.public_key), "alice", "")
    conn.send(core.hello())
    [challenge] = conn.frames()
    core.frame_received(challenge)
    forged = wire.encode(wire.error(ErrorCode.AUTH_FAILED, "forged in clear"))
    with pytest.raises(ProtocolError) as info:
        core.frame_received(forged)
    assert info.value.code == ErrorCode.UNEXPECTED
    # Before the handshake a clear error is the server's answer.
    early = ClientCore(bytes(server.key.public_key), "alice", "")
    with pytest.raises(LoginFailed):
        early.frame_received(forged)


# -- 11: no presence oracle ------------------------------------------------------------

def test_duplicate_reject_answers_409_only_to_the_right_password():
    server = Harness(application=RecordingApp(), users={"alice": "pw"}, duplicate_login="reject")
    assert server.connect().attempt_login("alice", "pw")[0].user == "alice"
    assert error_codes(server.connect().attempt_login("alice", "guess")) == [ErrorCode.AUTH_FAILED]
    assert error_codes(server.connect().attempt_login("alice", "pw")) == [ErrorCode.ALREADY_LOGGED_IN]
    assert server.stats.logins["auth_failed"] == 1


# -- 13: the hello version is the integer 1 ---------------------------------------------

@pytest.mark.parametrize("version", [1.0, True, "1", [1]])
def test_hello_version_must_be_the_integer_1(version):
    server = Harness(application=RecordingApp())
    conn = server.connect()
    hello = json.loads(ClientCore(bytes(server.key.public_key), "a", "").hello())
    hello["version"] = version
    conn.send(json.dumps(hello).encode())
    [frame] = conn.frames()
    assert json.loads(frame)["code"] == ErrorCode.BAD_VERSION
    assert conn.closed


# -- 3: files written atomically, never through a symlink; private keys kept private -----

import os
import stat

from gamesession import files
from gamesession.client import cli
from gamesession.keys import KeyFileError, load_or_create_private_key, read_private_key
from gamesession.knock import rule as knock_rule


@pytest.fixture
def victim(tmp_path):
    """A file an attacker would like the server to overwrite and chmod."""
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    path.chmod(0o644)
    return path


def unharmed(victim):
    return victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_keygen_force_does_not_write_through_a_symlink(tmp_path, victim, capsys):
    link = tmp_path / "server.key"
    link.symlink_to(victim)
    assert cli.main(["keygen", "--key-file", str(link), "--force"]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert unharmed(victim) and link.is_symlink()


def test_knock_file_does_not_write_through_a_symlink(tmp_path, victim):
    link = tmp_path / "knock.seq"
    link.symlink_to(victim)
    with pytest.raises(OSError) as info:
        knock_rule.write_sequence_file(str(link), (1101, 1102))
    assert "symbolic link" in str(info.value)
    assert unharmed(victim)


def test_knock_file_option_reports_a_symlink_in_one_line(tmp_path, victim):
    from twisted.python import usage
    from gamesession.server.tap import Options, makeService
    from twisted.internet.testing import MemoryReactorClock
    link = tmp_path / "knock.seq"
    link.symlink_to(victim)
    options = Options()
    options.parseOptions(["--key-file", str(tmp_path / "k"), "--knock-random", "10",
                          "--knock-file", str(link)])
    with pytest.raises(usage.UsageError) as info:
        makeService(options, MemoryReactorClock())
    assert "symbolic link" in str(info.value)
    assert unharmed(victim)


def test_secret_file_and_dangling_links_are_refused(tmp_path):
    target = tmp_path / "created-by-attacker"
    link = tmp_path / "secret"
    link.symlink_to(target)  # dangling: O_CREAT would follow it and create the target
    with pytest.raises(knock_rule.KnockError):
        knock_rule.write_secret_file(str(link))
    assert not target.exists()
    with pytest.raises(KeyFileError):
        load_or_create_private_key(str(link))
    assert not target.exists()


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f"
    files.write_atomic(str(path), b"one\n", 0o600)
    inode = path.stat().st_ino
    files.write_atomic(str(path), b"two\n", 0o600)
    assert path.read_bytes() == b"two\n" and path.stat().st_ino != inode  # renamed in, not rewritten
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        files.write_atomic(str(path), b"three\n", replace=False)
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_keys_readable_by_others_are_refused(tmp_path, capsys):
    path = tmp_path / "server.key"
    assert cli.main(["keygen", "--key-file", str(path)]) is None
    capsys.readouterr()
    read_private_key(str(path))
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(KeyFileError) as info:
            read_private_key(str(path))
        assert "chmod 600" in str(info.value)
    assert cli.main(["pubkey", "--key-file", str(path)]) == 2
    assert "accessible by others (mode 0604)" in capsys.readouterr().err


# -- 10: sessions per address --------------------------------------------------------------

@pytest.mark.parametrize("users", [None, {"u%d" % i: "pw" for i in range(6)}])
def test_one_address_cannot_take_every_session(users):
    """Guests and accounts alike: at most N sessions per source address."""
    server = Harness(application=RecordingApp(), users=users, max_sessions_per_address=3)
    names = ["u%d" % i for i in range(6)]
    for name in names[:3]:
        assert server.connect("192.0.2.1").attempt_login(name, "pw")[0].user == name
    assert error_codes(server.connect("192.0.2.1").attempt_login(names[3], "pw")) == [ErrorCode.SERVER_FULL]
    assert server.stats.logins["address_full"] == 1
    # Another address is not affected; replacing one's own session is allowed.
    assert server.connect("192.0.2.2").attempt_login(names[4], "pw")[0].user == names[4]
    assert server.connect("192.0.2.1").attempt_login(names[0], "pw")[0].user == names[0]
    # A session that ends frees its slot.
    server.registry.end(server.registry.by_user[names[1]], "logout")
    assert server.connect("192.0.2.1").attempt_login(names[5], "pw")[0].user == names[5]
    assert server.registry.by_host == {"192.0.2.1": 3, "192.0.2.2": 1}
    server.registry.shutdown()
    assert server.registry.by_host == {}


def test_a_user_may_replace_its_own_session_at_the_per_address_limit():
    server = Harness(users={"alice": "pw", "bob": "pw"}, max_sessions_per_address=1)
    first = server.connect("192.0.2.1").attempt_login("alice", "pw")[0]
    [refused] = server.connect("192.0.2.1").attempt_login("bob", "pw")
    assert (refused.code, refused.reason) == (ErrorCode.SERVER_FULL, "too many sessions from your address")
    # alice again from the same address: her new session replaces her old one there.
    again = server.connect("192.0.2.1").attempt_login("alice", "pw")[0]
    assert again.user == "alice" and again.token != first.token
    assert server.registry.by_host == {"192.0.2.1": 1}


def test_an_address_over_its_limit_takes_no_replacement_either():
    """A resume moves a session onto its new address whatever that address holds;
    a login there is then refused, even one that would replace its own session."""
    server = Harness(users={"alice": "pw", "bob": "pw"}, max_sessions_per_address=1,
                     resume_grace=20.0)
    server.connect("192.0.2.1").attempt_login("alice", "pw")
    bob = server.connect("192.0.2.2")
    bob.attempt_login("bob", "pw")
    core = bob.core
    bob.lose()
    server.connect("192.0.2.1").resume(core)  # bob's network changed to alice's address
    assert server.registry.by_host == {"192.0.2.1": 2}
    assert error_codes(server.connect("192.0.2.1").attempt_login("alice", "pw")) == [ErrorCode.SERVER_FULL]


def test_without_a_per_address_limit_no_address_is_counted():
    server = Harness(max_sessions_per_address=0)
    for i in range(3):
        server.connect("192.0.2.1").attempt_login("u%d" % i, "pw")
    assert len(server.registry) == 3 and server.registry.by_host == {}


class HostlessControl:
    """A control channel (registry.IControlChannel) with no source address."""

    ended = None

    def send_data(self, payload):
        pass

    def send_message(self, message, encoded=None):
        pass

    def session_ended(self, reason):
        self.ended = reason

    def detach(self):
        pass


def test_a_control_channel_without_an_address_is_not_counted_for_any():
    from types import SimpleNamespace

    server = Harness(max_sessions_per_address=1)
    server.connect("192.0.2.1").attempt_login("alice", "pw")
    control = HostlessControl()
    keys = SimpleNamespace(udp_s2c=bytes(32), udp_c2s=bytes(range(32)))
    session = server.registry.open("bot", object(), lambda: None, control, keys)
    assert server.registry.by_host == {"192.0.2.1": 1}
    server.registry.end(session, "kicked")
    assert control.ended == "kicked" and server.registry.by_host == {"192.0.2.1": 1}


def test_max_sessions_per_address_option(tmp_path):
    from gamesession.server.tap import Options, makeService
    from twisted.internet.testing import MemoryReactorClock
    options = Options()
    options.parseOptions(["--key-file", str(tmp_path / "k")])
    assert options["max-sessions-per-address"] == 64
    options = Options()
    options.parseOptions(["--key-file", str(tmp_path / "k"), "--max-sessions-per-address", "5"])
    assert makeService(options, MemoryReactorClock()).registry.max_sessions_per_address == 5


# -- 2: idle connections cannot hold the pending-login gate shut ------------------------

from gamesession.server import limits as L


def test_idle_connections_from_many_addresses_do_not_lock_out_an_honest_login():
    limits = L.Limits(pending=L.PendingLogins(max_total=40, max_per_address=4))
    server = Harness(application=RecordingApp(), limits=limits, users={"alice": "pw"})
    attackers = ["203.0.113.%d" % i for i in range(10)]
    held = [server.connect(host) for host in attackers for _ in range(4)]
    assert limits.pending.total == 40 and not any(c.closed for c in held)
    for attempt in range(5):
        honest = server.connect("198.51.100.7")
        assert not honest.closed
        assert honest.attempt_login("alice", "pw")[0].user == "alice"
        honest.lose()
        # The attacker refills at once.
        held = [c for c in held if not c.closed]
        for host in attackers:
            while sum(1 for c in held if c.protocol.host == host) < 4:
                held.append(server.connect(host))
    assert server.stats.limited["pending_evicted"] == 5
    assert server.stats.logins["ok"] == 5


def test_a_connection_without_hello_is_closed_after_the_hello_timeout():
    limits = L.Limits(hello_timeout=3.0)
    server = Harness(application=RecordingApp(), limits=limits, login_timeout=10.0)
    idle, talker = server.connect(), server.connect()
    talker.send(ClientCore(bytes(server.key.public_key), "a", "").hello())
    server.clock.advance(3.0)
    assert idle.closed and json.loads(idle.frames()[0])["code"] == ErrorCode.LOGIN_TIMEOUT
    assert not talker.closed  # its hello came: it has the whole login timeout
    assert server.stats.limited["hello_timeout"] == 1
    server.clock.advance(7.0)
    assert talker.closed


@pytest.mark.parametrize("host, subnet", [
    ("192.0.2.1", "192.0.2"), ("2001:db8:1:2:3:4:5:6", "20010db800010002"),
    ("::ffff:192.0.2.9", "192.0.2"),
])
def test_subnets(host, subnet):
    assert L.subnet_of(host) == subnet


def test_pending_per_subnet():
    limits = L.Limits(pending=L.PendingLogins(max_total=100, max_per_address=2, max_per_subnet=5))
    server = Harness(application=RecordingApp(), limits=limits)
    conns = [server.connect("203.0.113.%d" % i) for i in range(1, 7)]
    assert [c.closed for c in conns] == [False] * 5 + [True]
    assert server.stats.limited["pending_per_subnet"] == 1
    assert not server.connect("203.0.114.1").closed


# -- 9: hello floods are rate-limited before the X25519 work ----------------------------

def test_hellos_over_the_rate_get_429_without_key_work(monkeypatch):
    from gamesession.server import login as login_module
    work = []
    real = login_module.server_respond
    monkeypatch.setattr(login_module, "server_respond",
                        lambda *a: work.append(1) or real(*a))
    limits = L.Limits(hellos=L.HelloLimiter(rate=10, burst=5, subnet_rate=1000, subnet_burst=1000))
    server = Harness(application=RecordingApp(), limits=limits)
    codes = []
    for _ in range(8):
        conn = server.connect("203.0.113.1")
        conn.send(ClientCore(bytes(server.key.public_key), "a", "").hello())
        codes.append(json.loads(conn.frames()[0]).get("code"))
    assert codes == [None] * 5 + [ErrorCode.TOO_MANY_ATTEMPTS] * 3
    assert len(work) == 5 and server.stats.limited["hello_rate"] == 3
    # Other addresses are not affected; the rate refills.
    assert server.connect("198.51.100.7").attempt_login("bob")[0].user == "bob"
    server.clock.advance(0.1)
    assert server.connect("203.0.113.1").attempt_login("carol")[0].user == "carol"


def test_hellos_per_subnet():
    limits = L.Limits(hellos=L.HelloLimiter(rate=100, burst=100, subnet_rate=1, subnet_burst=4))
    server = Harness(application=RecordingApp(), limits=limits)
    results = []
    for i in range(6):
        conn = server.connect("203.0.113.%d" % i)
        conn.send(ClientCore(bytes(server.key.public_key), "a", "").hello())
        results.append(json.loads(conn.frames()[0]).get("code"))
    assert results == [None] * 4 + [ErrorCode.TOO_MANY_ATTEMPTS] * 2
    assert server.stats.limited["hello_rate_subnet"] == 2
    assert server.connect("198.51.100.7").attempt_login("bob")[0].user == "bob"


def test_hello_limiter_tables_are_bounded():
    hellos = L.HelloLimiter(rate=1, burst=1, subnet_rate=1, subnet_burst=1, size=50)
    for i in range(1000):
        hellos.allow("10.%d.%d.1" % (i // 256, i % 256), 0.0)
    assert len(hellos.by_host) <= 50 and len(hellos.by_subnet) <= 50


# -- 12: the login port's accept queue -----------------------------------------------------

from gamesession.server.tap import with_backlog


@pytest.mark.parametrize("endpoint, expected", [
    ("tcp:7000", "tcp:7000:backlog=1024"),
    ("tcp:7000:interface=127.0.0.1", "tcp:7000:interface=127.0.0.1:backlog=1024"),
    ("tcp6:port=7000", "tcp6:port=7000:backlog=1024"),
    ("tcp:7000:backlog=10", "tcp:7000:backlog=10"),
    ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
])
def test_listen_backlog_is_added_to_stream_endpoints(endpoint, expected):
    assert with_backlog(endpoint, 1024) == expected


def test_make_service_listens_with_the_backlog(tmp_path):
    from gamesession.server.tap import Options, makeService
    from twisted.internet.testing import MemoryReactorClock
    for argv, backlog in (([], 1024), (["--listen-backlog", "77"], 77)):
        options = Options()
        options.parseOptions(["--key-file", str(tmp_path / "k")] + argv)
        service = makeService(options, MemoryReactorClock())
        [login] = [s for s in service if getattr(s, "factory", None) is service.login_factory]
        assert login.endpoint._backlog == backlog


# -- 8: TCP messages after login are rate-limited ---------------------------------------

@pytest.mark.parametrize("framing", ["int16", "line"])
def test_a_message_flood_is_slowed_to_the_rate(framing):
    limits = L.Limits(message_rate=10.0, message_bytes_rate=0)
    server = Harness(application=RecordingApp(), framing=framing, limits=limits)
    conn = server.connect()
    conn.attempt_login("alice")
    flood = b"".join(wire.encode_frame(conn.core.data_message(b"%d" % i), framing)
                     for i in range(100))
    conn.feed(flood)  # one read carrying 100 messages
    received = lambda: sum(1 for e in server.app.events if e[0] == "message")
    assert received() == 21  # the 2 s burst (20), then one over: reading stops
    assert conn.transport.producerState == "paused"
    assert server.stats.limited["message_rate"] == 1
    for second in range(1, 5):
        server.clock.advance(1.0)
        assert 21 + 10 * (second - 1) < received() <= 21 + 10 * second + 1
    for _ in range(100):
        server.clock.advance(0.1)
    assert received() == 100  # nothing lost, all in order
    assert [e[2] for e in server.app.events if e[0] == "message"] == [b"%d" % i for i in range(100)]
    assert conn.transport.producerState == "producing"


def test_message_bytes_rate():
    meter = L.MessageMeter(message_rate=0, byte_rate=1000.0, now=0.0, burst_seconds=1.0)
    assert meter.charge(0.0, 600) == 0
    assert meter.charge(0.0, 600) == pytest.approx(0.2)
    assert meter.charge(0.2, 0) == 0


def test_message_rate_options(tmp_path):
    from gamesession.server.tap import Options, makeService
    from twisted.internet.testing import MemoryReactorClock
    options = Options()
    options.parseOptions(["--key-file", str(tmp_path / "k"), "--max-message-rate", "7"])
    limits = makeService(options, MemoryReactorClock()).login_factory.limits
    assert (limits.message_rate, limits.message_bytes_rate) == (7.0, 128 * 1024)


# -- 7 and 13: UDP reads are bounded per reactor turn, zero-length datagrams included -----

import socket as socketlib

from twisted.internet.protocol import DatagramProtocol

from gamesession.boundedudp import BoundedPort, BoundedUDPServer


class CountingProtocol(DatagramProtocol):
    def __init__(self):
        self.got = []

    def datagramReceived(self, data, addr):
        self.got.append(data)


@pytest.mark.parametrize("payload", [b"", b"x" * 58])
def test_bounded_port_reads_at_most_n_datagrams_per_turn(payload):
    proto = CountingProtocol()
    port = BoundedPort(0, proto, interface="127.0.0.1", max_datagrams=32)
    port._bindSocket()  # a real socket, no reactor needed to call doRead by hand
    port.protocol = proto
    try:
        address = port.socket.getsockname()
        with socketlib.socket(socketlib.AF_INET, socketlib.SOCK_DGRAM) as sender:
            for _ in range(200):
                sender.sendto(payload, address)
        import time
        time.sleep(0.05)
        port.doRead()
        assert len(proto.got) == 32  # plain udp.Port: all 200 in one turn (0 bytes add nothing)
        for _ in range(10):
            port.doRead()
        assert len(proto.got) == 200 and set(proto.got) == {payload}
        port.doRead()  # empty socket: returns quietly
    finally:
        port.socket.close()


def test_knock_ports_listen_bounded(tmp_path):
    from gamesession.knock import listeners
    from gamesession.server import tap
    options = tap.Options()
    options.parseOptions(["--key-file", str(tmp_path / "k"), "--knock", "7102,7101"])
    from fakes import MemoryReactorUDP
    service = tap.makeService(options, MemoryReactorUDP())
    knock = [s for s in service if isinstance(s, listeners.KnockService)][0]
    bounded = [s for s in knock if isinstance(s, BoundedUDPServer)]
    assert [s.max_datagrams for s in bounded] == [listeners.KNOCKS_PER_READ] * 2


def test_the_plain_game_port_reads_bounded_too():
    """The batched game port reads at most 4 x 64 datagrams per turn; the plain one as many."""
    from twisted.internet import reactor
    from gamesession.server.gameport import GamePortService, PLAIN_DATAGRAMS_PER_READ
    service = GamePortService(0, CountingProtocol(), interface="127.0.0.1", reactor=reactor,
                              udp_io="plain")
    port = service._getPort()
    try:
        assert isinstance(port, BoundedPort) and port.max_datagrams == PLAIN_DATAGRAMS_PER_READ
    finally:
        port.stopListening()


def test_junk_knocks_are_refused_before_the_mac():
    """Cheap checks first: wrong size, version, position or time cost no BLAKE2b."""
    from gamesession.knock import rule as k
    calls = []
    knocker = k.Knocker((7102, 7101), secret=bytes(32))
    real = k.verify_knock
    try:
        k.verify_knock = lambda *a: calls.append(1) or real(*a)
        now = 1000.0
        good = dict(k.make_client_knocks((7102, 7101), bytes(32), "203.0.113.1", now))
        header = bytearray(good[7102])
        for junk in (b"", b"x" * 57, b"\x02" + bytes(header[1:]),
                     bytes(header[:1]) + b"\x01" + bytes(header[2:]),
                     k.encode_knock(bytes(32), "203.0.113.1", 7102, 0, int(now) - 100, bytes(16))):
            knocker.knock("203.0.113.1", 7102, junk, now)
        assert calls == []
        knocker.knock("203.0.113.1", 7102, good[7102], now)
        assert calls == [1]
    finally:
        k.verify_knock = real


def test_knock_mac_is_libsodium_blake2b():
    import nacl.encoding
    import nacl.hash
    from gamesession.knock import rule as k
    header = k.HEADER.pack(1, 0, 1234, bytes(16))
    expected = nacl.hash.blake2b(k.CONTEXT + bytes([4, 203, 0, 113, 1]) + b"\x1b\xbe" + header,
                                 digest_size=32, key=b"s" * 32, encoder=nacl.encoding.RawEncoder)
    assert k.knock_mac(b"s" * 32, "203.0.113.1", 7102, header) == expected


# -- 4: one holder of the knock secret cannot starve other knockers ----------------------

def test_a_knock_flood_with_the_secret_does_not_make_honest_knocks_stale():
    from gamesession.knock import rule as k
    secret = bytes(range(32))
    sequence = (7102, 7101, 7103)
    knocker = k.Knocker(sequence, secret=secret, max_tracked=1000)
    now = 1000.0
    honest = list(k.make_client_knocks(sequence, secret, "198.51.100.7", now))
    for port, data in honest[:2]:
        assert knocker.knock("198.51.100.7", port, data, now).granted is None
    # The attacker floods valid first knocks, each with a fresh nonce, dated
    # as far in the future as it is allowed.
    for i in range(20000):
        t = now + 0.0002 * i
        port, data = next(iter(k.make_client_knocks(sequence, secret, "203.0.113.66", t + 5)))
        knocker.knock("203.0.113.66", port, data, t)
    port, data = honest[2]
    assert knocker.knock("198.51.100.7", port, data, now + 5.0).granted == "198.51.100.7"
    # The flood only made the flooder's own knocks stale (its own floor).
    assert knocker.replay.held_by("203.0.113.66") <= 16


def test_knocks_dated_far_in_the_future_are_stale():
    from gamesession.knock import rule as k
    secret = bytes(32)
    knocker = k.Knocker((7102, 7101), secret=secret, skew=30.0)
    assert knocker.future_skew == 5.0
    [(port, data), _] = k.make_client_knocks((7102, 7101), secret, "192.0.2.1", 1000.0 + 20)
    knocker.knock("192.0.2.1", port, data, 1000.0)
    assert knocker.stats["stale"] == 1


def test_an_evicted_nonce_still_cannot_be_replayed_from_its_sender():
    from gamesession.knock import rule as k
    secret = bytes(32)
    knocker = k.Knocker((7102, 7101), secret=secret, per_host=2)
    first = list(k.make_client_knocks((7102,), secret, "192.0.2.1", 1000.0))
    knocker.knock("192.0.2.1", *first[0], 1000.0)
    for i in range(5):  # pushes the first nonce out of the sender's quota
        knocker.knock("192.0.2.1", *next(iter(k.make_client_knocks((7102,), secret, "192.0.2.1",
                                                                    1001.0 + i))), 1001.0 + i)
    assert not knocker.replay.seen(first[0][1][10:26])
    before = knocker.stats["stale"]
    knocker.knock("192.0.2.1", *first[0], 1006.0)
    assert knocker.stats["stale"] == before + 1  # its sender's floor refuses it


def test_the_startup_heap_is_frozen_out_of_full_collections():
    """Finding 12: a full collection of twistd's startup heap stalled accepts for 30-170 ms."""
    import gc
    from gamesession.server.tap import freeze_startup_heap
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


def test_knocks_bound_to_a_server_id_do_not_open_another_server():
    """Finding 4: servers sharing a secret no longer accept each other's knocks."""
    from gamesession.knock import rule as k
    secret, seq, host, now = bytes(range(32)), (7102, 7101), "192.0.2.1", 1000.0
    east = k.Knocker(seq, secret=secret, server_id=b"east")
    west = k.Knocker(seq, secret=secret, server_id=b"west")
    unbound = k.Knocker(seq, secret=secret)
    for_east = list(k.make_client_knocks(seq, secret, host, now, server_id=b"east"))
    for knocker in (west, unbound):
        assert [knocker.knock(host, p, d, now).granted for p, d in for_east] == [None, None]
        assert knocker.stats["bad_mac"] == 2
    assert [east.knock(host, p, d, now).granted for p, d in for_east][-1] == host
    # And an unbound knock does not open a bound server.
    plain = list(k.make_client_knocks(seq, secret, host, now))
    fresh = k.Knocker(seq, secret=secret, server_id=b"east")
    assert [fresh.knock(host, p, d, now).granted for p, d in plain] == [None, None]


def test_knock_server_id_options(tmp_path):
    from twisted.python import usage
    from gamesession.knock import rule as k
    from gamesession.server.tap import Options, makeService
    from fakes import MemoryReactorUDP
    k.write_secret_file(str(tmp_path / "s"))
    base = ["--key-file", str(tmp_path / "k"), "--knock", "7102,7101"]
    options = Options()
    options.parseOptions(base + ["--knock-secret", str(tmp_path / "s"), "--knock-server-id", "eu-1"])
    service = makeService(options, MemoryReactorUDP())
    assert service.login_factory.gate.knocker.server_id == b"eu-1"
    for bad in (base + ["--knock-server-id", "eu-1"],  # classic knocks have no MAC
                base + ["--knock-secret", str(tmp_path / "s"), "--knock-server-id", "x" * 65]):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(bad)
