"""In-memory server and client for synchronous tests: no sockets, task.Clock time."""


from nacl.public import PrivateKey
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from gamesession.protocol import wire
from gamesession.server.accounts import make_portal
from gamesession.protocol.clientcore import ClientCore
from gamesession.protocol.wire import encode_frame, split_frames
from gamesession.server.login import LoginFactory
from gamesession.server.registry import SessionRegistry
from gamesession.ops.stats import ServerStats

SERVER_KEY = PrivateKey(bytes(range(100, 132)))


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


class Connection:
    """One TCP connection to the server's LoginProtocol, seen from the client."""

    def __init__(self, harness, host="198.51.100.7", port=40000):
        self.harness = harness
        self.framing = harness.framing
        self.protocol = harness.factory.buildProtocol(IPv4Address("TCP", host, port))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.protocol.makeConnection(self.transport)
        self.core = None

    def send(self, payload: bytes):
        self.protocol.dataReceived(encode_frame(payload, self.framing))

    def received(self):
        frames, _ = split_frames(self.transport.value(), self.framing)
        self.transport.clear()
        return frames

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
        """Run hello/challenge/login; returns the client's events (a Welcome on success)."""
        self.send(self.handshake(user, password, server_key))
        return self.pump()

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

    def lose(self):
        self.protocol.connectionLost(None)


class Harness:
    def __init__(self, framing="int16", users=None, limits=None, **registry_options):
        self.clock = task.Clock()
        self.framing = framing
        self.stats = ServerStats()
        self.registry = SessionRegistry(self.clock, stats=self.stats, **registry_options)
        self.udp = FakeUDP()
        self.registry.transport = self.udp
        checkers = []
        if users is not None:
            checker = InMemoryUsernamePasswordDatabaseDontUse(**users)
            checkers.append(checker)
        self.factory = LoginFactory(make_portal(checkers), self.registry, SERVER_KEY, 7001,
                                    self.clock, login_timeout=10.0, framing=framing,
                                    limits=limits)

    def connect(self, **kw):
        return Connection(self, **kw)

    def logged_in(self, user="alice", password="pw", **kw):
        connection = self.connect(**kw)
        events = connection.login(user, password)
        assert events and type(events[0]).__name__ == "Welcome", events
        return connection, self.registry.by_user[user]

    def udp_sent(self):
        sent, self.udp.sent = self.udp.sent, []
        return sent
