"""The in-memory server harness: the real login factory and registry on a
``task.Clock``, ``StringTransport`` connections and a recording UDP transport.

``Harness`` is the one in-memory server of the tests; ``Connection`` is one
TCP connection to it, driven from the client's side by the sans-I/O
``ClientCore``.  No sockets, no reactor: time moves only with
``harness.clock.advance``.  Tests against real sockets and a real twistd use
tests/hardening.py ``SyncClient`` and tests/conftest.py ``start_server``.
"""

import itertools

from nacl.public import PrivateKey
from prometheus_client import generate_latest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from gamesession.client.status import Figures
from gamesession.ops.metrics import make_registry
from gamesession.ops.stats import ServerStats
from gamesession.protocol import rooms, wire
from gamesession.protocol.clientcore import ClientCore, LoginFailed, MessageData, SessionEnded
from gamesession.protocol.wire import encode_frame, split_frames
from gamesession.server.accounts import make_portal
from gamesession.server.login import LoginFactory
from gamesession.server.registry import SessionRegistry

SERVER_KEY = PrivateKey(bytes(range(100, 132)))
FIRST_CLIENT_PORT = 40000


class FakeUDP:
    """A datagram transport that records what was written."""

    def __init__(self):
        self.sent = []

    def write(self, packet, address):
        self.sent.append((packet, address))


class _StoppedPort:
    def stopListening(self):
        return None


class MemoryReactorUDP(MemoryReactorClock):
    """MemoryReactorClock, which has no listenUDP, recording listenUDP calls too."""

    def __init__(self):
        super().__init__()
        self.udpPorts = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udpPorts.append((port, protocol, interface, maxPacketSize))
        return _StoppedPort()


class RecordingApp:
    """An application that records every call in ``events`` and echoes messages."""

    def __init__(self):
        self.events = []

    def session_started(self, session):
        self.events.append(("started", session.user))

    def session_ended(self, session, reason):
        self.events.append(("ended", session.user, reason))

    def datagram_received(self, session, payload):
        self.events.append(("datagram", session.user, payload))

    def message_received(self, session, payload):
        self.events.append(("message", session.user, payload))
        session.send_message(payload)


class Connection:
    """One TCP connection to the server's LoginProtocol, seen from the client.

    Two ways to read what the server wrote: ``received()`` takes every whole
    frame and clears the transport; ``frames()`` returns the frames written
    since its last call and leaves ``transport.value()`` whole (for tests
    that check everything the server ever sent).
    """

    def __init__(self, harness, host="198.51.100.7", port=FIRST_CLIENT_PORT):
        self.harness = harness
        self.framing = harness.framing
        self.address = IPv4Address("TCP", host, port)
        self.protocol = harness.factory.buildProtocol(self.address)
        self.transport = StringTransport(peerAddress=self.address)
        self.protocol.makeConnection(self.transport)
        self.core = None
        self._read = 0
        self._rest = b""

    def feed(self, data: bytes):
        """Raw bytes from the client, as TCP delivered them (any segmenting)."""
        self.protocol.dataReceived(data)

    def send(self, payload: bytes):
        self.protocol.dataReceived(encode_frame(payload, self.framing))

    def received(self):
        frames, _ = split_frames(self.transport.value(), self.framing)
        self.transport.clear()
        self._read, self._rest = 0, b""
        return frames

    def frames(self):
        """The whole frames the server wrote since the last call (not clearing the transport)."""
        value = self.transport.value()
        if len(value) < self._read:  # cleared meanwhile
            self._read, self._rest = 0, b""
        new, self._rest = split_frames(self._rest + value[self._read:], self.framing)
        self._read = len(value)
        return new

    def clear_messages(self):
        return [wire.decode(f) for f in self.received()]

    @property
    def closed(self):
        return self.transport.disconnecting

    def handshake(self, user="alice", password="pw", server_key=None):
        """Run hello/challenge; returns the sealed login frame, not yet sent."""
        key = server_key if server_key is not None else bytes(SERVER_KEY.public_key)
        self.core = ClientCore(key, user, password)
        self.send(self.core.hello())
        [challenge] = self.received()
        [login], _ = self.core.frame_received(challenge)
        return login

    def login(self, user="alice", password="pw", server_key=None):
        """Run hello/challenge/login; returns the client's events (a Welcome on success).

        A refused login raises the client core's LoginFailed; ``attempt_login``
        returns it among the events instead."""
        self.send(self.handshake(user, password, server_key))
        return self.pump()

    def attempt_login(self, user="alice", password="pw", server_key=None):
        """Run the whole login; the client's events, ending in a LoginFailed if refused.

        Reads with ``frames()``, so ``transport.value()`` keeps the whole exchange."""
        key = server_key if server_key is not None else bytes(SERVER_KEY.public_key)
        self.core = ClientCore(key, user, password)
        self.send(self.core.hello())
        events = []
        for _ in range(4):
            for frame in self.frames():
                try:
                    out, got = self.core.frame_received(frame)
                except LoginFailed as e:
                    return events + [e]
                events.extend(got)
                for f in out:
                    self.send(f)
            if self.core.welcome is not None:
                break
        return events

    def pump(self):
        """Feed the server's frames to the client core; returns its events."""
        events = []
        for f in self.received():
            _, more = self.core.frame_received(f)
            events.extend(more)
        return events

    def resume(self, core, resume_session=True):
        """Resume (or, without ``resume_session``, log in again) with an existing core.

        Returns the client's events (a Resumed on success); raises
        ResumeRefused or LoginFailed as the core does.
        """
        self.core = core
        self.send(core.reconnect(resume_session))
        [challenge] = self.received()
        [request], _ = core.frame_received(challenge)
        self.send(request)
        return self.pump()

    def server_events(self):
        """The client core's events for the frames since the last ``frames()``
        (session_end, data, errors as LoginFailed), not clearing the transport."""
        events = []
        for frame in self.frames():
            try:
                events.extend(self.core.frame_received(frame)[1])
            except LoginFailed as e:
                events.append(e)
        return events

    def lose(self):
        self.protocol.connectionLost(None)

    def request(self, message: dict):
        """Send one sealed inner message (a room request, say) as the client."""
        self.send(self.core.seal_message(message))

    def messages(self):
        """The server's frames since the last read, sealed ones opened: inner dicts."""
        out = []
        for frame in self.received():
            envelope = wire.decode(frame)
            if envelope["type"] == "sealed":
                envelope = wire.decode(self.core.receiver.open(wire.unseal_envelope(envelope)))
            out.append(envelope)
        return out

    def room_events(self):
        """The room events among the server's frames, parsed by the room codec."""
        return [rooms.parse_event(m) for m in self.messages() if m["type"] in rooms.EVENT_TYPES]


class Harness:
    """The real LoginFactory and SessionRegistry on a Clock and fake transports.

    ``users`` is a dict of name to password for an in-memory checker (like
    ``--auth memory:``); None means guests.  ``limits`` and ``login_timeout``
    go to the LoginFactory, the rest (``application``, ``duplicate_login``,
    ``max_sessions``, ...) to the SessionRegistry.  ``connect()`` gives each
    connection its own client port, counting up from 40000.  Several
    harnesses (the nodes of a cluster) may share one ``clock``.
    """

    def __init__(self, framing="int16", users=None, limits=None, login_timeout=10.0,
                 checkers=None, clock=None, **registry_options):
        self.clock = clock if clock is not None else task.Clock()
        self.framing = framing
        self.stats = ServerStats()
        self.registry = SessionRegistry(self.clock, stats=self.stats, **registry_options)
        self.app = self.registry.application
        self.udp = FakeUDP()
        self.registry.transport = self.udp
        self.key = SERVER_KEY
        checkers = list(checkers or [])
        if users is not None:
            checker = InMemoryUsernamePasswordDatabaseDontUse(**users)
            checkers.append(checker)
        self.factory = LoginFactory(make_portal(checkers), self.registry, SERVER_KEY, 7001,
                                    self.clock, login_timeout=login_timeout, framing=framing,
                                    limits=limits)
        self._ports = itertools.count(FIRST_CLIENT_PORT)
        self._collectors = None

    def connect(self, host="198.51.100.7", port=None):
        """A new connection from ``host``; from the next free client port unless given."""
        return Connection(self, host=host, port=next(self._ports) if port is None else port)

    def logged_in(self, user="alice", password="pw", **kw):
        connection = self.connect(**kw)
        events = connection.login(user, password)
        assert events and type(events[0]).__name__ == "Welcome", events
        return connection, self.registry.by_user[user]

    def udp_sent(self):
        sent, self.udp.sent = self.udp.sent, []
        return sent

    # -- the metrics endpoint ----------------------------------------------------

    @property
    def collectors(self):
        """The Prometheus CollectorRegistry over this server (made on first use)."""
        if self._collectors is None:
            self._collectors = make_registry(self.registry)
        return self._collectors

    @collectors.setter
    def collectors(self, collectors):
        self._collectors = collectors

    def figures(self):
        """{(name, labels): value} of one scrape, read as Prometheus reads it."""
        return Figures(generate_latest(self.collectors).decode()).samples

    def figure(self, name, **labels):
        return self.figures()[(name, tuple(sorted(labels.items())))]


# -- reading a client's events and checking a registry --------------------------------

def session_ends(events):
    return [e.reason for e in events if isinstance(e, SessionEnded)]


def messages(events):
    return [e.payload for e in events if isinstance(e, MessageData)]


def error_codes(events):
    return [e.code for e in events if isinstance(e, LoginFailed)]


def check_registry(registry) -> None:
    """The three indexes of a registry describe the same live sessions."""
    sessions = list(registry.by_token.values())
    assert len(sessions) == len(registry.by_user) == len(registry.by_control) == len(registry)
    for token, session in registry.by_token.items():
        assert session.token == token
        assert not session.ended
        assert registry.by_user[session.user] is session
        assert registry.by_control[session.control] is session


def logged_events(run) -> list:
    """Every log event (twisted.logger) emitted while ``run()`` runs."""
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return events
