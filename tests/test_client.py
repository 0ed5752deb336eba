"""The Twisted client against an in-process server on loopback (real sockets, short timers)."""

import pytest
import pytest_twisted
from twisted.internet import defer, task

from gamesession.server import tap
from gamesession.server.application import EchoApplication
from gamesession.client import GameClient
from gamesession.protocol.clientcore import LoginFailed

pytestmark = [pytest.mark.network, pytest.mark.timeout(30)]


class WelcomeApp(EchoApplication):
    """Greets each player with a message the moment the session starts."""

    def session_started(self, session):
        session.send_message(b"welcome " + session.user.encode())


@pytest.fixture
def server(tmp_path, request):
    from twisted.internet import reactor
    options = tap.Options()
    options.parseOptions([
        "--login", "tcp:0:interface=127.0.0.1", "--udp", "0", "--interface", "127.0.0.1",
        "--key-file", str(tmp_path / "k.key"), "--auth", "memory:alice:pw:bob:pw",
        "--keepalive", "0.2", "--session-timeout", "1",
    ] + list(getattr(request, "param", [])))
    service = tap.makeService(options, reactor)
    service.startService()
    login = [s for s in service if hasattr(s, "endpoint")][0]
    udp = [s for s in service if hasattr(s, "_port") and hasattr(s._port, "write")][0]
    service.login_port = login._waitingForPort.result.getHost().port
    service.login_factory.public_udp_port = udp._port.getHost().port
    yield service
    pytest_twisted.blockon(defer.maybeDeferred(service.stopService))


async def connect(service, user="alice", password="pw", **callbacks):
    from twisted.internet import reactor
    return await GameClient.connect(reactor, "127.0.0.1", service.login_port,
                                    service.public_key, user, password, timeout=5, **callbacks)


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


# -- first use: what a game developer trips on (issue 12) --------------------------

@pytest_twisted.ensureDeferred
async def test_server_key_as_printed_as_its_bytes_or_raw(server):
    from gamesession.keys import decode_key
    for key in (server.public_key, server.public_key.encode(), decode_key(server.public_key)):
        client = await connect_with_key(server, key)
        assert await client.logout() == "logout"


async def connect_with_key(service, key):
    from twisted.internet import reactor
    return await GameClient.connect(reactor, "127.0.0.1", service.login_port, key,
                                    "alice", "pw", timeout=5)


@pytest.mark.parametrize("key", ["not a key", b"\xff" * 44, "QUJD", 12345])
def test_a_malformed_server_key_is_a_clear_value_error(key):
    from twisted.internet import reactor
    from gamesession.client import KeyFileError
    with pytest.raises(KeyFileError) as info:
        GameClient.connect(reactor, "127.0.0.1", 1, key, "alice").send(None)
    assert isinstance(info.value, ValueError)
    assert "key" in str(info.value)


WELCOME = ["--app", "test_client.WelcomeApp"]


@pytest.mark.parametrize("server", [WELCOME], indirect=True)
@pytest_twisted.ensureDeferred
async def test_events_before_a_callback_is_set_wait_for_it(server):
    from twisted.internet import reactor
    client = await connect(server)
    client.send_datagram(b"first state")  # echoed
    await task.deferLater(reactor, 0.5, lambda: None)  # the welcome and the echo arrived
    messages, datagrams, closed = [], [], []
    client.on_message = messages.append
    client.on_datagram = datagrams.append
    assert messages == [b"welcome alice"] and datagrams == [b"first state"]
    client.send_message(b"later")
    got = defer.Deferred()
    client.on_message = got.callback
    assert await got.addTimeout(5, reactor) == b"later"
    await client.logout()
    client.on_closed = closed.append  # set after the end: still told
    assert closed == ["logout"]


@pytest.mark.parametrize("server", [WELCOME], indirect=True)
@pytest_twisted.ensureDeferred
async def test_callbacks_given_to_connect_get_every_event(server):
    from twisted.internet import reactor
    messages, closed = [], []
    datagram = defer.Deferred()
    client = await connect(server, on_message=messages.append,
                           on_datagram=datagram.callback, on_closed=closed.append)
    client.send_datagram(b"first state")
    assert await datagram.addTimeout(5, reactor) == b"first state"
    assert messages == [b"welcome alice"]
    server.registry.by_user["alice"].kick()
    await client.wait_closed().addTimeout(5, reactor)
    assert closed == ["kicked"]


def test_every_public_name_of_the_client_has_a_docstring():
    import inspect
    import pydoc
    import gamesession.client as api
    for name in api.__all__:
        obj = getattr(api, name)
        if not isinstance(obj, int):
            assert inspect.getdoc(obj), name
    for name, value in vars(GameClient).items():
        if not name.startswith("_") and not isinstance(value, int) and name != "log":
            assert inspect.getdoc(getattr(GameClient, name)), name
    from gamesession.protocol import clientcore
    for name in dir(clientcore.ClientCore):
        if not name.startswith("_"):
            assert inspect.getdoc(getattr(clientcore.ClientCore, name)), name
    for cls in (clientcore.Welcome, clientcore.SessionEnded, clientcore.MessageData):
        assert cls.__doc__, cls
    text = pydoc.render_doc(GameClient, renderer=pydoc.plaintext)
    for name in ("on_message", "on_datagram", "on_closed", "wait_closed", "MAX_MESSAGE",
                 "send_message", "send_datagram", "ping", "logout", "connect"):
        assert name in text


@pytest_twisted.ensureDeferred
async def test_an_oversized_message_is_refused_before_sending(server):
    from twisted.internet import reactor
    from gamesession.client import MAX_MESSAGE, PayloadTooLarge
    client = await connect(server)
    got = defer.Deferred()
    client.on_message = got.callback
    with pytest.raises(PayloadTooLarge, match="4096"):
        client.send_message(b"x" * (MAX_MESSAGE + 1))
    with pytest.raises(PayloadTooLarge):
        client.send_datagram(b"x" * (GameClient.MAX_DATAGRAM + 1))
    client.send_message(b"x" * MAX_MESSAGE)  # the limit itself is fine
    assert await got.addTimeout(5, reactor) == b"x" * MAX_MESSAGE
    assert client.end_reason is None
    await client.ping()
    await client.logout()


@pytest_twisted.ensureDeferred
async def test_a_closed_client_raises_session_closed(server):
    from gamesession.client import SessionClosed
    client = await connect(server)
    await client.logout()
    for use in (client.ping, lambda: client.send_message(b"m"),
                lambda: client.send_datagram(b"d")):
        with pytest.raises(SessionClosed, match=r"session ended \(logout\)"):
            use()
    assert await client.logout() == "logout"


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_ipv6_server_logs_in_and_pings_over_udp(start_server):
    from twisted.internet import reactor
    server = start_server(host="::1")
    client = await GameClient.connect(reactor, "::1", server.login_port, server.public_key,
                                      "guest", timeout=5)
    assert client.server_udp[0] == "::1"
    assert await client.ping(2) >= 0
    assert await client.logout() == "logout"


@pytest.mark.parametrize("server", [WELCOME], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_failing_callback_is_logged_and_the_session_goes_on(server):
    from twisted.internet import reactor
    from twisted.logger import capturedLogs

    def broken(payload):
        raise RuntimeError("game bug")

    def broken_end(reason):
        raise RuntimeError("game bug at the end")

    with capturedLogs() as events:
        client = await connect(server, on_message=broken, on_closed=broken_end)
        await client.ping()
        assert client.end_reason is None
        assert await client.logout().addTimeout(5, reactor) == "logout"  # still fires
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 2
    assert {e["name"] for e in failures} == {"on_message", "on_closed"}
    for e in failures:
        e["log_failure"].trap(RuntimeError)
