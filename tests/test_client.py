"""The Twisted client against an in-process server on loopback (real sockets, short timers)."""

import pytest
import pytest_twisted
from twisted.internet import defer, task

from gamesession.server import tap
from gamesession.client import GameClient
from gamesession.protocol.clientcore import LoginFailed

pytestmark = [pytest.mark.network, pytest.mark.timeout(30)]


@pytest.fixture
def server(tmp_path):
    from twisted.internet import reactor
    options = tap.Options()
    options.parseOptions([
        "--login", "tcp:0:interface=127.0.0.1", "--udp", "0", "--interface", "127.0.0.1",
        "--key-file", str(tmp_path / "k.key"), "--auth", "memory:alice:pw:bob:pw",
        "--keepalive", "0.2", "--session-timeout", "1",
    ])
    service = tap.makeService(options, reactor)
    service.startService()
    login = [s for s in service if hasattr(s, "endpoint")][0]
    udp = [s for s in service if hasattr(s, "_port") and hasattr(s._port, "write")][0]
    service.login_port = login._waitingForPort.result.getHost().port
    service.login_factory.public_udp_port = udp._port.getHost().port
    yield service
    pytest_twisted.blockon(defer.maybeDeferred(service.stopService))


async def connect(service, user="alice", password="pw"):
    from twisted.internet import reactor
    from nacl.public import PublicKey
    from gamesession.keys import decode_key
    return await GameClient.connect(reactor, "127.0.0.1", service.login_port,
                                    PublicKey(decode_key(service.public_key)), user, password,
                                    timeout=5)


@pytest_twisted.ensureDeferred
async def test_ping_datagram_message_and_logout(server):
    from twisted.internet import reactor
    client = await connect(server)
    assert await client.ping() >= 0
    got = defer.Deferred()
    client.on_datagram = got.callback
    client.send_datagram(b"state 1")
    assert await got.addTimeout(5, reactor) == b"state 1"
    got = defer.Deferred()
    client.on_message = got.callback
    client.send_message(b"chat hi")
    assert await got.addTimeout(5, reactor) == b"chat hi"
    assert await client.logout() == "logout"
    assert len(server.registry) == 0


@pytest_twisted.ensureDeferred
async def test_wrong_password_raises_login_failed(server):
    with pytest.raises(LoginFailed) as info:
        await connect(server, password="nope")
    assert info.value.code == 401


@pytest_twisted.ensureDeferred
async def test_idle_session_is_kept_alive_by_keepalives(server):
    from twisted.internet import reactor
    client = await connect(server)
    await task.deferLater(reactor, 1.6, lambda: None)
    assert client.end_reason is None
    session = server.registry.by_user["alice"]
    assert session.ended is None and session.address is not None
    await client.logout()


@pytest_twisted.ensureDeferred
async def test_client_times_out_when_the_server_goes_silent(server):
    from twisted.internet import reactor
    client = await connect(server)
    await client.ping()
    server.registry.transport = None  # the server stops sending over UDP
    server.registry.session_timeout = 100  # and would not end the session itself
    reason = await client.wait_closed().addTimeout(5, reactor)
    assert reason == "timeout"


@pytest_twisted.ensureDeferred
async def test_kick_reaches_the_client(server):
    from twisted.internet import reactor
    client = await connect(server)
    await client.ping()
    server.registry.by_user["alice"].kick()
    assert await client.wait_closed().addTimeout(5, reactor) == "kicked"
