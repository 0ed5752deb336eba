"""Knock listeners and client: fake transports first, then real loopback."""

import shutil
import socket

import pytest
import pytest_twisted
from twisted.application import service
from twisted.internet import defer, error, task
from twisted.logger import capturedLogs

from conftest import free_port, need
from fakes import FakeUDP, MemoryReactorUDP
from gamesession.knock import rule as k
from gamesession.knock import client as knockclient
from gamesession.knock.listeners import KnockService, makeKnockService

SEQ = (7102, 7101, 7103)
PEER = ("198.51.100.7", 40000)


class FakeFirewall(service.Service):
    def __init__(self):
        self.grants = []

    def grant(self, host, seconds):
        self.grants.append((host, seconds))


def make_service(**kw):
    clock = MemoryReactorUDP()
    kn = k.Knocker(SEQ, window=10, grant=30, reply_port=kw.pop("reply_port", None))
    svc = makeKnockService(kn, clock=clock, interface="127.0.0.1", **kw)
    for port, proto in svc.protocols.items():
        proto.makeConnection(FakeUDP())
    return svc, clock


def knock_all(svc, ports=SEQ, data=b"\x00", peer=PEER):
    for port in ports:
        svc.protocols[port].datagramReceived(data, peer)


def test_service_listens_on_every_knock_port():
    svc, clock = make_service()
    svc.startService()
    try:
        assert [(p, i) for p, _, i, _ in clock.udpPorts] == [(p, "127.0.0.1") for p in SEQ]
    finally:
        svc.stopService()


def test_gate_closed_then_open_then_expired():
    svc, clock = make_service()
    assert not svc.gate.allows(PEER[0])
    knock_all(svc)
    assert svc.gate.allows(PEER[0])
    clock.advance(30)
    assert not svc.gate.allows(PEER[0])
    assert svc.knocker.stats["rejected_connections"] == 2


def test_listeners_never_answer_by_default():
    svc, clock = make_service()
    knock_all(svc, data=b"x" * 100)
    assert all(p.transport.sent == [] for p in svc.protocols.values())


def test_reply_goes_to_the_completing_knock_only():
    svc, clock = make_service(reply_port=7000)
    knock_all(svc, data=b"xy")
    written = {port: p.transport.sent for port, p in svc.protocols.items()}
    assert written == {7102: [], 7101: [], 7103: [(b"\x1b\x58", PEER)]}


def test_grants_reach_the_firewall():
    fw = FakeFirewall()
    svc, clock = make_service(firewall=fw)
    knock_all(svc)
    assert fw.grants == [(PEER[0], 30)]
    assert list(svc)[0] is fw  # started first, stopped last


def test_timer_expires_state_and_summarizes_without_per_packet_lines():
    svc, clock = make_service(summary_interval=60)
    with capturedLogs() as events:
        svc.startService()
        for i in range(5000):
            svc.protocols[SEQ[0]].datagramReceived(b"", (f"10.0.{i >> 8}.{i & 255}", 1))
        for i in range(30):
            knock_all(svc, peer=(f"192.0.2.{i}", 1))
        assert len(svc.knocker.progress) == 5000
        clock.advance(20)
        assert len(svc.knocker.progress) == 0  # expired by the timer
        clock.advance(30)
        svc.stopService()
    grants = [e for e in events if e.get("log_format", "").startswith("knock: granted")]
    summaries = [e for e in events if e.get("log_format", "").startswith("knock summary")]
    assert len(grants) == 20
    assert len(summaries) == 1
    assert summaries[0]["knocks"] == 5000 + 90
    assert summaries[0]["grants"] == 30
    assert summaries[0]["unlogged"] == 10
    assert summaries[0]["counts"]["progress_expired"] == 5000
    assert len(events) < 30


def test_sorted_sequence_warns():
    clock = MemoryReactorUDP()
    svc = KnockService(k.Knocker((7101, 7102, 7103)), clock=clock)
    with capturedLogs() as events:
        svc.startService()
        svc.stopService()
    assert any("is sorted" in e.get("log_format", "") for e in events)


# -- client, against fakes ---------------------------------------------------


def test_make_client_knocks_classic_and_authenticated():
    assert list(k.make_client_knocks(SEQ, None, "", 0.0)) == [(p, b"\x00") for p in SEQ]
    secret = bytes(32)
    knocks = list(k.make_client_knocks(SEQ, secret, "192.0.2.1", 100.5))
    kn = k.Knocker(SEQ, secret=secret)
    assert [kn.knock("192.0.2.1", p, d, 101.0).granted for p, d in knocks][-1] == "192.0.2.1"


# -- real loopback -----------------------------------------------------------


def free_udp_ports(n):
    ports = set()
    while len(ports) < n:
        ports.add(free_port(socket.SOCK_DGRAM))
    return tuple(ports)


@pytest.fixture
def loopback_service():
    from twisted.internet import reactor

    services = []

    def start(**kw):
        ports = free_udp_ports(3)
        kn = k.Knocker(ports, window=10, grant=30, **kw)
        svc = KnockService(kn, interface="127.0.0.1", clock=reactor)
        svc.startService()
        services.append(svc)
        return svc

    yield start
    for svc in services:
        pytest_twisted.blockon(defer.maybeDeferred(svc.stopService))


async def wait_for(reactor, predicate, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        await task.deferLater(reactor, 0.02, lambda: None)
    return predicate()


@pytest.mark.network
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_stock_knock_client(loopback_service):
    from twisted.internet import reactor, utils

    need(shutil.which("knock"), "the stock `knock` client is not installed (apt-get install knockd)")
    svc = loopback_service()
    assert not svc.gate.allows("127.0.0.1")
    ports = [str(p) for p in svc.knocker.sequence]
    code = await utils.getProcessValue(
        shutil.which("knock"), ["-u", "-d", "20", "127.0.0.1", *ports], reactor=reactor
    )
    assert code == 0
    assert await wait_for(reactor, lambda: svc.gate.allows("127.0.0.1"))


@pytest.mark.network
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_client_knocks_classic(loopback_service):
    from twisted.internet import reactor

    svc = loopback_service()
    await knockclient.knock(reactor, "127.0.0.1", svc.knocker.sequence)
    assert await wait_for(reactor, lambda: svc.gate.allows("127.0.0.1"))


@pytest.mark.network
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_client_knocks_authenticated_and_gets_reply(loopback_service):
    from twisted.internet import reactor

    secret = k.generate_secret()
    svc = loopback_service(secret=secret, reply_port=4242)
    replies = []
    orig = svc.protocols[svc.knocker.sequence[-1]].transport.write

    def spy(data, addr):
        replies.append(data)
        return orig(data, addr)

    svc.protocols[svc.knocker.sequence[-1]].transport.write = spy
    await knockclient.knock(reactor, "localhost", svc.knocker.sequence, secret=secret)
    assert await wait_for(reactor, lambda: svc.gate.allows("127.0.0.1"))
    assert replies == [k.encode_reply(4242)]
    assert svc.knocker.stats["bad_mac"] == 0


@pytest.mark.network
@pytest.mark.timeout(30)
@pytest.mark.parametrize("gated", [
    error.ConnectionClosed("closed before the login completed"),
    error.ConnectError("104: Connection reset by peer"),
    error.ConnectionRefusedError(),
])
@pytest_twisted.ensureDeferred
async def test_knock_and_connect_resends_the_sequence(loopback_service, gated):
    from twisted.internet import reactor

    svc = loopback_service()
    attempts = []

    async def connect():
        attempts.append(svc.knocker.stats["knocks"])
        if len(attempts) == 1:
            svc.knocker.grants.expire(float("inf"))  # as if the last knock was lost
            raise gated
        return "logged in"

    result = await knockclient.knock_and_connect(
        reactor, "127.0.0.1", svc.knocker.sequence, connect, attempts=3
    )
    assert result == "logged in"
    assert attempts == [3, 6]


@pytest.mark.network
@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_knock_and_connect_gives_up(loopback_service):
    from twisted.internet import reactor

    svc = loopback_service()

    def connect():
        return defer.fail(error.ConnectionRefusedError())

    with pytest.raises(error.ConnectionRefusedError):
        await knockclient.knock_and_connect(
            reactor, "127.0.0.1", svc.knocker.sequence, connect, attempts=2, settle=0
        )
    assert svc.knocker.stats["knocks"] == 6
