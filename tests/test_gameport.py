"""The game port's two I/O paths: batched recvmmsg/sendmmsg and Twisted's udp.Port.

The batched port is driven by hand (``doRead`` called directly on a port
bound to loopback, the reactor never run), so these tests are deterministic;
the adversarial suite runs both paths against a real twistd
(tests/test_adversarial_udp.py).
"""

import select
import socket

import pytest
from twisted.internet import reactor as real_reactor
from twisted.python import usage

from gamesession import mmsg
from gamesession.server import tap
from gamesession.server.gameport import BatchedPort, GamePort, choose_udp_io
from gamesession.server.registry import SessionRegistry, datagram_sender

from conftest import need
from fakes import MemoryReactorUDP

pytestmark = pytest.mark.timeout(20)


def client_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def drain(sock, wait=0.2):
    got = []
    while select.select([sock], [], [], wait)[0]:
        got.append(sock.recvfrom(65536))
        wait = 0.05
    return got


def wait_readable(sock, wait=1.0):
    assert select.select([sock], [], [], wait)[0]


class Recorder:
    """A protocol that records datagrams and answers each with ``reply(datagram)``."""

    def __init__(self, reply=None):
        self.received = []
        self.reply = reply
        self.not_sent = 0

    def makeConnection(self, transport):
        self.transport = transport

    def doStart(self):
        pass

    def doStop(self):
        pass

    def datagramReceived(self, datagram, address):
        self.received.append((datagram, address))
        if self.reply is not None:
            self.transport.send(self.reply(datagram), address)

    def datagrams_not_sent(self, count):
        self.not_sent += count


@pytest.fixture
def batched_port():
    need(mmsg.available(), "recvmmsg/sendmmsg are Linux-only")
    ports = []

    def start(protocol, batch=8):
        port = BatchedPort(0, protocol, "127.0.0.1", reactor=real_reactor, batch=batch)
        port.startListening()
        ports.append(port)
        return port, ("127.0.0.1", port.getHost().port)

    yield start
    for port in ports:
        port.stopListening()


def test_batched_port_delivers_every_datagram_with_its_address_zero_length_too(batched_port):
    protocol = Recorder()
    port, address = batched_port(protocol, batch=4)
    client = client_socket()
    sent = [b"", b"x", b"", bytes(1200), b"y" * 8192, b"z"]
    for packet in sent:
        client.sendto(packet, address)
    wait_readable(port.socket)
    port.doRead()  # several batches of 4 in one read
    assert [d for d, _ in protocol.received] == sent
    assert {a for _, a in protocol.received} == {client.getsockname()}
    client.close()


def test_a_datagram_larger_than_the_buffer_is_dropped_not_truncated(batched_port):
    protocol = Recorder()
    port, address = batched_port(protocol)
    client = client_socket()
    client.sendto(b"a" * 9000, address)
    client.sendto(b"ok", address)
    wait_readable(port.socket)
    port.doRead()
    assert protocol.received == [(b"ok", client.getsockname())]
    assert port._batch_io.truncated == 1
    client.close()


def test_replies_leave_at_the_end_of_their_read_batch(batched_port):
    seen_on_wire = []
    client = client_socket()

    def reply(datagram):
        # While the batch is handled, nothing has been sent yet...
        seen_on_wire.append(len(drain(client, wait=0)))
        return b"re:" + datagram

    protocol = Recorder(reply)
    port, address = batched_port(protocol, batch=64)
    for i in range(10):
        client.sendto(b"%d" % i, address)
    wait_readable(port.socket)
    port.doRead()
    assert seen_on_wire == [0] * 10
    # ...and when doRead returns, every reply is out, in order, to the right address.
    replies = drain(client)
    assert replies == [(b"re:%d" % i, address) for i in range(10)]
    assert port._queue == []
    client.close()


def test_more_replies_than_a_batch_are_all_sent(batched_port):
    protocol = Recorder(lambda d: d)
    port, address = batched_port(protocol, batch=4)
    client = client_socket()
    for i in range(4):
        client.sendto(b"%d" % i, address)
    wait_readable(port.socket)
    # Each datagram gets three replies: the queue fills past the batch mid-read.
    protocol.reply = None

    def triple(datagram, addr):
        for n in range(3):
            port.send(datagram + b".%d" % n, addr)

    protocol.datagramReceived = triple
    port.doRead()
    assert sorted(d for d, _ in drain(client)) == sorted(
        b"%d.%d" % (i, n) for i in range(4) for n in range(3))
    client.close()


def test_a_send_outside_a_read_batch_goes_out_at_once(batched_port):
    port, address = batched_port(Recorder())
    client = client_socket()
    port.send(b"keepalive", client.getsockname())
    assert port._queue == []
    assert drain(client) == [(b"keepalive", address)]
    client.close()


def test_unsendable_queued_datagrams_are_counted_not_raised(batched_port):
    protocol = Recorder(lambda d: b"answer")
    port, address = batched_port(protocol)
    client = client_socket()
    client.sendto(b"q", address)
    wait_readable(port.socket)
    protocol.reply = None
    protocol.datagramReceived = lambda d, a: (port.send(b"good", a),
                                              port.send(b"bad", ("not an address", 1)),
                                              port.send(b"v6 on v4", ("::1", 5)))
    port.doRead()
    assert protocol.not_sent == 2
    assert drain(client) == [(b"good", address)]
    client.close()


def test_a_lone_reply_goes_with_sendto_and_a_failed_one_is_counted(batched_port, monkeypatch):
    # At light load a read batch holds one datagram: its reply needs no message vector.
    from test_fanout import RecordingLibc
    libc = RecordingLibc(mmsg._LIBC)
    monkeypatch.setattr(mmsg, "_LIBC", libc)
    protocol = Recorder(lambda d: b"re:" + d)
    port, address = batched_port(protocol)
    client = client_socket()
    client.sendto(b"one", address)
    wait_readable(port.socket)
    port.doRead()
    assert drain(client) == [(b"re:one", address)]
    assert libc.sendmmsg_calls == [] and protocol.not_sent == 0
    # Two replies in one batch: one sendmmsg of two.
    client.sendto(b"a", address)
    client.sendto(b"b", address)
    wait_readable(port.socket)
    port.doRead()
    assert sorted(drain(client)) == [(b"re:a", address), (b"re:b", address)]
    assert libc.sendmmsg_calls == [2]
    # A lone reply that cannot go (an address of the wrong family, one too long) is counted.
    for bad in [lambda d, a: port.send(b"v6 on v4", ("::1", 5)),
                lambda d, a: port.send(bytes(port._batch_io.slot + 1), a)]:
        protocol.datagramReceived = bad
        client.sendto(b"q", address)
        wait_readable(port.socket)
        port.doRead()
    assert protocol.not_sent == 2 and drain(client, wait=0) == []
    client.close()


def test_address_cache_is_bounded(batched_port):
    protocol = Recorder()
    port, address = batched_port(protocol)
    port._batch_io.max_addresses = 3
    clients = [client_socket() for _ in range(8)]
    for client in clients:
        client.sendto(b"hi", address)
        wait_readable(port.socket)
        port.doRead()
    assert len(port._batch_io._sockaddr) <= 3 and len(port._batch_io._by_raw) <= 3
    assert [a for _, a in protocol.received] == [c.getsockname() for c in clients]
    for client in clients:
        client.close()


def test_ipv6_addresses_as_udp_port_gives_them(batched_port):
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")  # not a missing tool: the host has no ::1
    protocol = Recorder(lambda d: b"six")
    port = BatchedPort(0, protocol, "::1", reactor=real_reactor)
    port.startListening()
    try:
        client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        client.bind(("::1", 0))
        client.sendto(b"", ("::1", port.getHost().port))
        wait_readable(port.socket)
        port.doRead()
        assert protocol.received == [(b"", client.getsockname()[:2])]
        wait_readable(client)
        assert client.recv(100) == b"six"
        client.close()
    finally:
        port.stopListening()


def test_registry_sends_through_the_batched_ports_queue(batched_port):
    port, _ = batched_port(GamePort(SessionRegistry(real_reactor)))
    registry = port.protocol.registry
    assert registry.transport is port
    assert datagram_sender(port) == port.send
    registry.transport = None


def test_choosing_the_path():
    memory = MemoryReactorUDP()
    assert choose_udp_io("auto", memory) == "plain"
    assert choose_udp_io("plain", real_reactor) == "plain"
    with pytest.raises(ValueError, match="use --udp-io plain"):
        choose_udp_io("batched", memory)
    if mmsg.available():
        assert choose_udp_io("auto", real_reactor) == "batched"
        assert choose_udp_io("batched", real_reactor) == "batched"


def test_udp_io_option_is_checked(tmp_path):
    config = tap.Options()
    with pytest.raises(usage.UsageError, match="--udp-io must be one of auto, batched, plain"):
        config.parseOptions(["--udp-io", "fast", "--key-file", str(tmp_path / "k")])
    config = tap.Options()
    config.parseOptions(["--udp-io", "batched", "--key-file", str(tmp_path / "k")])
    with pytest.raises(usage.UsageError, match="batched UDP I/O needs"):
        tap.makeService(config, MemoryReactorUDP())


@pytest.mark.parametrize("udp_io", ["batched", "plain"])
def test_udp_rcvbuf_sets_the_game_ports_receive_buffer_and_logs_what_the_kernel_gave(udp_io):
    from twisted.logger import capturedLogs

    from gamesession.server.gameport import GamePortService

    if udp_io == "batched":
        need(mmsg.available(), "recvmmsg/sendmmsg are Linux-only")
    fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    default = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    fresh.close()
    asked = 24576 if default > 2 * 24576 else 2 * default  # anything but the default
    services = []
    for rcvbuf in (asked, None):
        service = GamePortService(0, GamePort(SessionRegistry(real_reactor)), "127.0.0.1",
                                  reactor=real_reactor, udp_io=udp_io, rcvbuf=rcvbuf)
        with capturedLogs() as events:
            port = service._getPort()
        try:
            real_reactor.removeReader(port)
            got = port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            services.append((service, got, [e for e in events
                                            if e.get("event") == "game_port_rcvbuf"]))
        finally:
            port.stopListening()
    (service, got, logged), (untouched, default_got, not_logged) = services
    assert service.rcvbuf_effective == got != default
    assert got >= asked  # Linux reports double what it granted
    [event] = logged
    assert event["asked"] == asked and event["effective"] == got
    # Without the option the OS default stays, and nothing is logged about it.
    assert untouched.rcvbuf_effective is None and default_got == default and not_logged == []


@pytest.mark.parametrize("value", ["0", "-1", "lots", "4M", str(2**31)])
def test_a_bad_udp_rcvbuf_is_a_usage_error(tmp_path, value):
    config = tap.Options()
    with pytest.raises(usage.UsageError, match="--udp-rcvbuf must be a number of bytes"):
        config.parseOptions(["--udp-rcvbuf", value, "--key-file", str(tmp_path / "k")])


def test_udp_rcvbuf_reaches_the_game_port_service(tmp_path):
    from gamesession.server.gameport import GamePortService

    config = tap.Options()
    config.parseOptions(["--udp-rcvbuf", "1048576", "--key-file", str(tmp_path / "k")])
    top = tap.makeService(config, MemoryReactorUDP())
    [game_port] = [s for s in top if isinstance(s, GamePortService)]
    assert game_port.rcvbuf == 1048576
    config = tap.Options()
    config.parseOptions(["--key-file", str(tmp_path / "k")])
    [game_port] = [s for s in tap.makeService(config, MemoryReactorUDP())
                   if isinstance(s, GamePortService)]
    assert game_port.rcvbuf is None


def test_bench_rooms_passes_udp_rcvbuf_to_the_server_and_the_baseline(monkeypatch):
    import subprocess

    from gamesession.bench import procs, rooms

    assert "--udp-rcvbuf" not in rooms.server_options(2, 4, 20.0)
    options = rooms.server_options(2, 4, 20.0, 1 << 20)
    assert options[options.index("--udp-rcvbuf") + 1] == str(1 << 20)
    tap.Options().parseOptions(list(options) + ["--key-file", "unused.key"])  # all valid
    started = []

    class Started(Exception):
        pass

    def popen(argv, **kw):
        started.append(argv)
        raise Started()

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(Started):
        procs.start_echo(None, "gamesession.bench.relay", 1 << 20)
    assert started[0][-3:] == ["gamesession.bench.relay", "0", str(1 << 20)]
