"""GameClient resumes by itself: an in-process server, a cutting proxy, real loopback sockets."""

import pytest
import pytest_twisted
from nacl.public import PublicKey
from twisted.internet import defer, task

from gamesession.client import GameClient
from gamesession.client.reconnect import Backoff
from gamesession.keys import decode_key

from tcpproxy import CuttingProxy
from test_client import server  # noqa: F401 - the in-process server fixture

pytestmark = [pytest.mark.network, pytest.mark.timeout(30)]


@pytest.fixture
def proxy(server):  # noqa: F811
    proxy = CuttingProxy(server.login_port, lifetime=30)
    yield proxy
    proxy.close()


class Events:
    def __init__(self, client):
        self.seen = []
        self.back = defer.Deferred()
        client.on_reconnecting = lambda reason: self.seen.append("reconnecting")
        client.on_reconnected = self._reconnected
        client.on_resume_failed = lambda reason: self.seen.append("failed")

    def _reconnected(self, resumed):
        self.seen.append("resumed" if resumed else "relogged")
        if not self.back.called:
            self.back.callback(resumed)


async def connect_via(proxy, service, user="alice", password="pw"):
    from twisted.internet import reactor
    client = await GameClient.connect(
        reactor, "127.0.0.1", proxy.port, PublicKey(decode_key(service.public_key)),
        user, password, timeout=5,
        udp_port=service.login_factory.public_udp_port)
    client.reconnect_initial = 0.02
    return client


async def sleep(seconds):
    from twisted.internet import reactor
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_reset_connection_resumes_the_same_session(server, proxy):  # noqa: F811
    from twisted.internet import reactor
    client = await connect_via(proxy, server)
    events = Events(client)
    before = []
    client.before_reconnect = lambda: before.append(proxy.accepted)
    await client.ping()
    session = server.registry.by_user["alice"]
    old_token = session.token
    # Sent while reconnecting: queued, then delivered after the resume.
    client.on_reconnecting = lambda reason: (events.seen.append("reconnecting"),
                                             client.send_message(b"sent while away"))
    proxy.cut("rst")
    got = defer.Deferred()
    client.on_message = got.callback
    assert await events.back.addTimeout(5, reactor) is True
    assert events.seen == ["reconnecting", "resumed"]
    assert before == [1]  # called once, before the second connection
    assert client.resumed == 1 and client.relogins == 0
    assert server.registry.by_user["alice"] is session and session.token != old_token
    assert client.core.channel.token == session.token
    assert await got.addTimeout(5, reactor) == b"sent while away"
    assert await client.ping() >= 0
    assert server.registry.stats.logins["ok"] == 1 and server.registry.stats.resumes["ok"] == 1
    assert await client.logout() == "logout"


@pytest_twisted.ensureDeferred
async def test_a_black_holed_connection_is_noticed_and_resumed(server, proxy):  # noqa: F811
    from twisted.internet import reactor
    client = await connect_via(proxy, server)
    events = Events(client)
    await client.ping()
    proxy.cut("blackhole", hold=10.0)
    # keepalive is 0.2 s here: the TCP ping goes unanswered and the client gives up the connection.
    assert await events.back.addTimeout(5, reactor) is True
    assert not proxy.links[0].closed  # still held silent: no reset told the client
    assert proxy.accepted == 2 and client.resumed == 1
    assert not server.registry.by_user["alice"].ended
    assert await client.ping() >= 0
    assert await client.logout() == "logout"


@pytest_twisted.ensureDeferred
async def test_a_kick_while_away_ends_the_client_without_retrying(server, proxy):  # noqa: F811
    from twisted.internet import reactor
    client = await connect_via(proxy, server)
    events = Events(client)
    await client.ping()
    proxy.refusing = True
    proxy.cut("rst")
    await sleep(0.2)
    assert client.reconnecting and client.end_reason is None
    server.registry.by_user["alice"].kick()  # suspended: the client hears it over UDP
    assert await client.wait_closed().addTimeout(5, reactor) == "kicked"
    attempts = proxy.accepted
    await sleep(0.5)
    assert proxy.accepted == attempts and not client.reconnecting


@pytest_twisted.ensureDeferred
async def test_the_client_gives_up_when_the_grace_runs_out(server, proxy):  # noqa: F811
    from twisted.internet import reactor
    server.registry.resumes.grace = 1.0
    client = await connect_via(proxy, server)
    events = Events(client)
    proxy.refusing = True
    proxy.cut("rst")
    started = reactor.seconds()
    assert await client.wait_closed().addTimeout(5, reactor) == "disconnected"
    # It stops trying once the next delay would end past the grace.
    assert 0.5 <= reactor.seconds() - started <= 2.0
    assert events.seen == ["reconnecting", "failed"]
    assert 2 <= proxy.accepted <= 40  # bounded attempts, with backoff


@pytest_twisted.ensureDeferred
async def test_a_refused_resume_falls_back_to_a_login(server, proxy):  # noqa: F811
    import attrs
    from twisted.internet import reactor
    client = await connect_via(proxy, server)
    events = Events(client)
    core = client.core
    core.welcome = attrs.evolve(core.welcome,
                                ticket=attrs.evolve(core.ticket, resume_id=bytes(16)))
    proxy.cut("rst")
    assert await events.back.addTimeout(5, reactor) is False
    assert client.relogins == 1 and client.resumed == 0
    assert server.registry.stats.logins["ok"] == 2
    assert await client.ping() >= 0
    assert await client.logout() == "logout"


def test_backoff_doubles_is_jittered_and_bounded():
    fractions = iter([0.0, 1.0, 0.5] + [1.0] * 20)
    backoff = Backoff(0.1, 1.0, random_fraction=lambda: next(fractions))
    delays = [backoff.next() for _ in range(10)]
    assert delays[:3] == pytest.approx([0.05, 0.2, 0.3])
    assert max(delays) == 1.0 and delays[-1] == 1.0
    spread = Backoff(0.1, 1.0)
    for _ in range(100):
        assert 0.025 <= spread.next() <= 1.0


@pytest_twisted.ensureDeferred
async def test_too_many_attempts_is_waited_out_not_fatal(server, proxy):  # noqa: F811
    # After a server restart many clients behind one address present unknown
    # tickets at once and trip the per-address backoff: the client waits and retries.
    from twisted.internet import reactor
    client = await connect_via(proxy, server)
    events = Events(client)
    attempts = server.login_factory.limits.attempts
    for _ in range(attempts.free + 1):
        attempts.failed("127.0.0.1", reactor.seconds())
    assert attempts.wait("127.0.0.1", reactor.seconds()) > 0.5
    proxy.cut("rst")
    assert await events.back.addTimeout(10, reactor) is True
    assert server.registry.stats.resumes["too_many_attempts"] >= 1
    assert client.resumed == 1
    assert await client.logout() == "logout"


@pytest_twisted.ensureDeferred
async def test_a_resume_refused_for_good_ends_the_client_without_a_login(server, proxy):  # noqa: F811
    from twisted.internet import reactor
    client = await connect_via(proxy, server)
    await client.ping()
    proxy.refusing = True
    proxy.cut("rst")
    await sleep(0.2)
    transport, server.registry.transport = server.registry.transport, None
    server.registry.by_user["alice"].kick()  # the UDP DISCONNECT does not reach the client
    server.registry.transport = transport
    proxy.refusing = False
    assert await client.wait_closed().addTimeout(5, reactor) == "kicked"
    assert server.registry.stats.resumes["resume_ended"] == 1
    assert server.registry.stats.logins["ok"] == 1  # no fallback login after a kick


@pytest_twisted.ensureDeferred
async def test_a_logout_while_reconnecting_goes_out_once_back(server, proxy):  # noqa: F811
    from twisted.internet import reactor
    client = await connect_via(proxy, server)
    events = Events(client)
    await client.ping()
    closed = []
    client.on_reconnecting = lambda reason: closed.append(client.logout())
    proxy.cut("rst")
    assert await events.back.addTimeout(5, reactor) is True
    assert await closed[0].addTimeout(5, reactor) == "logout"
    assert server.registry.stats.logouts["logout"] == 1 and len(server.registry) == 0
