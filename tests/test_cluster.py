"""Two and three real ``twistd gamesession --cluster`` nodes on loopback and a real redis-server.

The rules themselves are unit-tested on the in-memory directory
(test_cluster_node.py); these show them across processes: a kick from one
node ends the session on another within 200 ms, reject refuses with 409,
a node killed with -9 drops out and its user logs in elsewhere within 10 s,
a Redis restart does not interrupt a session's pings, and a clean stop
deregisters the node.
"""

import time

import pytest
import pytest_twisted
from nacl.public import PrivateKey
from twisted.internet import defer, task

from conftest import need_module, run_cli
from gamesession.bench.procs import free_port
from gamesession.client import GameClient
from gamesession.client.status import Figures, StatusError, fetch, metrics_url
from gamesession.keys import decode_key
from gamesession.protocol.clientcore import LoginFailed

need_module("txredisapi")
pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]

USERS = "memory:alice:pw:bob:pw"


def reactor():
    from twisted.internet import reactor
    return reactor


def sleep(seconds):
    return task.deferLater(reactor(), seconds, lambda: None)


@pytest.fixture
def nodes(start_server, redis_server):
    """start(name, *options): a node of one cluster (shared key, one Redis), up in the directory.

    Each node serves --metrics on ``server.metrics_port``; the node is ready
    once its figures say ``gamesession_cluster_up 1``.
    """
    key = PrivateKey.generate()

    def start(name, *options):
        metrics = free_port()
        server = start_server("--cluster", redis_server.url, "--node-name", name,
                              "--advertise", "127.0.0.1", "--auth", USERS,
                              "--keepalive", "0.5", "--session-timeout", "5",
                              "--metrics", "tcp:{}:interface=127.0.0.1".format(metrics),
                              *options, key=key)
        server.name, server.metrics_port = name, metrics
        deadline = time.monotonic() + 20
        while not cluster_up(server):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        return server
    return start


def cluster_up(server) -> bool:
    try:
        figures = Figures(fetch(metrics_url("127.0.0.1:{}".format(server.metrics_port)), 2.0))
    except StatusError:
        return False
    return figures.get("cluster_up") == 1


async def login(server, user="alice", timeout=5.0):
    return await GameClient.connect(reactor(), "127.0.0.1", server.login_port,
                                    decode_key(server.public_key), user, "pw", timeout=timeout)


async def until(condition, timeout, step=0.02):
    deadline = reactor().seconds() + timeout
    while not condition():
        if reactor().seconds() > deadline:
            return False
        await sleep(step)
    return True


@pytest_twisted.ensureDeferred
async def test_kick_across_nodes_within_200ms_and_reject_on_a_third(nodes, redis_server):
    a = nodes("node-a")
    b = nodes("node-b")
    c = nodes("node-c", "--duplicate-login", "reject")
    first = await login(a)
    assert redis_server.command("GET", "gamesession:user:alice").startswith(b"$")
    ended = defer.Deferred()
    first.closed.addBoth(lambda _: ended.callback(reactor().seconds()))
    started = reactor().seconds()
    second = await login(b)
    at = await ended.addTimeout(5, reactor())
    assert first.end_reason == "replaced"
    print("cross-node kick: {:.1f} ms".format((at - started) * 1000))
    assert at - started < 0.2, "the session on node-a ended {:.0f} ms after the login on node-b began".format(
        (at - started) * 1000)
    assert await second.ping() >= 0
    with pytest.raises(LoginFailed) as refused:
        await login(c)
    assert refused.value.code == 409
    assert await second.ping() >= 0
    assert await second.logout() == "logout"
    assert await until(lambda: redis_server.command("EXISTS", "gamesession:user:alice") == b":0\r\n", 5)
    third = await login(c)  # nobody holds alice now: reject lets her in
    await third.logout()
    for server in (a, b, c):
        assert "Traceback" not in server.log()


@pytest_twisted.ensureDeferred
async def test_killed_node_drops_out_and_its_user_logs_in_elsewhere_within_10s(nodes, redis_server):
    a = nodes("node-a", "--duplicate-login", "reject")
    b = nodes("node-b", "--duplicate-login", "reject")
    client = await login(a)
    with pytest.raises(LoginFailed):
        await login(b)
    a.stop(sig=9)
    killed = reactor().seconds()
    while True:
        try:
            again = await login(b)
            break
        except LoginFailed as e:
            assert e.code == 409
            assert reactor().seconds() - killed < 10, "alice still held by the dead node"
            await sleep(0.2)
    took = reactor().seconds() - killed
    print("login elsewhere {:.1f} s after kill -9".format(took))
    assert took < 10
    assert redis_server.command("EXISTS", "gamesession:node:node-a") == b":0\r\n"
    await again.logout()
    client._abort()


@pytest_twisted.ensureDeferred
async def test_redis_restart_keeps_pings_going_refuses_logins_then_reregisters(nodes, redis_server,
                                                                              plugin_path):
    a = nodes("node-a")
    metrics = a.metrics_port
    client = await login(a)
    answered, lost = [], []
    running = True

    async def pinger():
        while running:
            try:
                answered.append(await client.ping(1.0))
            except defer.TimeoutError:
                lost.append(reactor().seconds())
            await sleep(0.05)
    pinging = defer.ensureDeferred(pinger())

    await sleep(0.3)
    redis_server.stop()
    with pytest.raises(LoginFailed) as refused:
        await login(a, "bob")
    assert refused.value.code == 503 and refused.value.reason == "cluster directory unavailable"
    status = run_cli(plugin_path, "status", "--metrics-url", "127.0.0.1:{}".format(metrics))
    assert "cluster: DOWN" in status.stdout, status
    before = len(answered)
    await sleep(1.5)
    assert len(answered) > before  # the session lives on without Redis
    redis_server.start()  # empty: no persistence
    assert await until(lambda: cluster_up(a) and redis_server.command(
        "EXISTS", "gamesession:user:alice") == b":1\r\n", 10)
    bob = await login(a, "bob")
    running = False
    await pinging
    assert not lost, "pings lost during the restart: {}".format(lost)
    assert client.end_reason is None
    status = run_cli(plugin_path, "status", "--metrics-url", "127.0.0.1:{}".format(metrics))
    assert status.returncode == 0, status.stderr
    assert "cluster: up as node-a (redis://127.0.0.1:{}/0)".format(redis_server.port) in status.stdout
    await bob.logout()
    await client.logout()


@pytest_twisted.ensureDeferred
async def test_clean_stop_deregisters_the_node_and_its_users(nodes, redis_server):
    a = nodes("node-a")
    b = nodes("node-b")
    client = await login(a)
    assert redis_server.command("ZCARD", "gamesession:nodes") == b":2\r\n"
    assert a.stop(sig=15) == 0
    await client.wait_closed()
    assert client.end_reason == "shutdown"
    assert redis_server.command("EXISTS", "gamesession:node:node-a") == b":0\r\n"
    assert redis_server.command("EXISTS", "gamesession:user:alice") == b":0\r\n"
    assert redis_server.command("ZCARD", "gamesession:nodes") == b":1\r\n"
    assert "Traceback" not in a.log()
    assert b.process.poll() is None
