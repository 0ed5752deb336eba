"""Issue 13 findings reproduced against a real ``twistd gamesession`` on loopback.

Many source addresses come from 127.0.0.0/8: each attacking socket is bound
to its own 127.0.x.y before it connects.  Every loop is bounded in time.
"""

import os
import select
import socket
import threading
import time
import urllib.request

import pytest

from gamesession.client.status import Figures
from gamesession.protocol.clientcore import ClientCore
from gamesession.keys import decode_key

from conftest import free_port, knock_ports, wait_for_port
from hardening import SyncClient, frame_bytes

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:{}/metrics".format(port), timeout=10) as r:
        return Figures(r.read().decode()).samples


def limited(samples, name):
    return samples.get(("gamesession_limited_total", (("limit", name),)), 0)


def open_from(source, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock):
    ready, _, _ = select.select([sock], [], [], 0)
    if not ready:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_idle_connections_from_many_addresses_do_not_lock_out_logins(start_server):
    """Finding 2: 10 addresses hold every pending slot with silent connections."""
    metrics_port = free_port()
    server = start_server("--max-pending", "60", "--max-pending-per-address", "6",
                          "--metrics", "tcp:{}:interface=127.0.0.1".format(metrics_port))
    wait_for_port(metrics_port, process=server.process)
    attackers = ["127.0.5.%d" % i for i in range(1, 11)]
    held = {host: [open_from(host, server.login_port) for _ in range(6)] for host in attackers}
    try:
        time.sleep(0.3)  # let the server accept them all
        assert scrape(metrics_port)[("gamesession_tcp_pending_login", ())] == 60
        for attempt in range(3):
            client = SyncClient(server, "honest%d" % attempt, timeout=5.0)
            assert client.welcome.user == "honest%d" % attempt
            client.close()
            # The attacker refills every slot it lost, at once.
            time.sleep(0.1)
            for host, socks in held.items():
                for i, sock in enumerate(socks):
                    if closed_by_server(sock):
                        sock.close()
                        socks[i] = open_from(host, server.login_port)
        samples = scrape(metrics_port)
        assert limited(samples, "pending_evicted") >= 3
        assert samples[("gamesession_logins_total", (("outcome", "ok"),))] == 3
    finally:
        for socks in held.values():
            for sock in socks:
                sock.close()


def hello_flood(server, sources, seconds, sent):
    """Open a connection from each source in turn, send a hello, drop it; for ``seconds``."""
    hello = frame_bytes(ClientCore(decode_key(server.public_key), "x", "").hello())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for source in sources:
            try:
                with open_from(source, server.login_port) as sock:
                    sock.sendall(hello)
                    sent[0] += 1
            except OSError:
                pass


def test_honest_logins_work_during_a_hello_flood_from_many_addresses(start_server):
    """Finding 9: hellos cost the server three X25519 operations each."""
    metrics_port = free_port()
    server = start_server("--metrics", "tcp:{}:interface=127.0.0.1".format(metrics_port))
    wait_for_port(metrics_port, process=server.process)
    sources = ["127.0.7.%d" % i for i in range(1, 21)] + ["127.0.8.%d" % i for i in range(1, 21)]
    sent = [0]
    flood = threading.Thread(target=hello_flood, args=(server, sources, 4.0, sent), daemon=True)
    flood.start()
    try:
        time.sleep(1.0)
        took = []
        for attempt in range(3):
            start = time.monotonic()
            client = SyncClient(server, "honest%d" % attempt, timeout=5.0)
            took.append(time.monotonic() - start)
            client.close()
    finally:
        flood.join(10)
    samples = scrape(metrics_port)
    rate_limited = limited(samples, "hello_rate") + limited(samples, "hello_rate_subnet")
    print("hellos sent {}, rate-limited {}, honest logins took {}".format(
        sent[0], rate_limited, ["%.3f s" % t for t in took]))
    assert rate_limited > 0
    assert samples[("gamesession_logins_total", (("outcome", "ok"),))] == 3


def test_the_login_port_listens_with_a_long_accept_queue(start_server):
    """Finding 12: Twisted's default backlog of 50 overflowed in a burst of connects.

    ss shows a listening socket's backlog as its Send-Q.
    """
    import shutil
    import subprocess
    from conftest import need
    need(shutil.which("ss") is not None, "ss is not installed (apt-get install iproute2)")
    server = start_server("--listen-backlog", "700")
    out = subprocess.run(["ss", "-Hltn", "sport = :{}".format(server.login_port)],
                         capture_output=True, text=True, timeout=10).stdout.split()
    assert out[0] == "LISTEN" and int(out[2]) == 700, out
    # And a burst of 600 connections from 600 addresses is all accepted.
    socks = []
    try:
        for i in range(600):
            socks.append(open_from("127.0.%d.%d" % (20 + i // 250, 1 + i % 250), server.login_port))
    finally:
        for sock in socks:
            sock.close()


def test_junk_knock_flood_leaves_the_game_port_its_share(start_server, tmp_path):
    """Finding 7: junk authenticated knocks from one sender with no secret."""
    from gamesession.knock import rule as k
    ports = knock_ports()
    secret_file = tmp_path / "knock.secret"
    secret = k.write_secret_file(str(secret_file))
    server = start_server("--knock", ",".join(map(str, ports)), "--knock-secret", str(secret_file))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as knocker:
        for port, data in k.make_client_knocks(ports, secret, "127.0.0.1", time.time()):
            knocker.sendto(data, ("127.0.0.1", port))
            time.sleep(0.02)
    # The last knock and the connection may be read in either order within a
    # reactor turn: let the grant land first (gamesession ping's knock waits too).
    time.sleep(0.3)
    client = SyncClient(server, "honest", timeout=5.0)
    stop = threading.Event()
    sent = [0]

    def flood():
        header = k.HEADER.pack(1, 0, int(time.time()), bytes(16))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.bind(("127.0.9.1", 0))
            deadline = time.monotonic() + 6
            while not stop.is_set() and time.monotonic() < deadline:
                for _ in range(100):
                    try:
                        junk.sendto(header + os.urandom(32), ("127.0.0.1", ports[0]))
                        junk.sendto(b"", ("127.0.0.1", ports[0]))
                        sent[0] += 2
                    except OSError:
                        pass

    flooder = threading.Thread(target=flood, daemon=True)
    rtts = []
    try:
        flooder.start()
        time.sleep(0.5)
        for _ in range(20):
            start = time.monotonic()
            assert client.ping(timeout=2.0)
            rtts.append(time.monotonic() - start)
    finally:
        stop.set()
        flooder.join(10)
        client.close()
    rtts.sort()
    print("junk knocks sent {}, game RTT during the flood: median {:.2f} ms, max {:.2f} ms".format(
        sent[0], rtts[len(rtts) // 2] * 1e3, rtts[-1] * 1e3))


def test_ping_knocks_for_the_server_id(start_server, plugin_path, tmp_path):
    """Finding 4: a knock gate bound to --knock-server-id opens only for knocks made for it."""
    from conftest import run_cli
    from gamesession.knock import rule as k
    ports = knock_ports()
    secret_file = str(tmp_path / "knock.secret")
    k.write_secret_file(secret_file)
    server = start_server("--knock", ",".join(map(str, ports)), "--knock-secret", secret_file,
                          "--knock-server-id", "arena-7")

    def ping(*extra):
        return run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(server.login_port),
                       "--server-key", server.public_key, "--count", "1", "--timeout", "3",
                       "--knock", ",".join(map(str, ports)), "--knock-secret", secret_file, *extra)

    assert ping("--knock-server-id", "arena-8").returncode == 1
    assert ping().returncode == 1
    result = ping("--knock-server-id", "arena-7")
    assert result.returncode == 0, result.stderr
