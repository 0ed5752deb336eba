"""Helpers for the hardening tests: an in-memory server and a blocking socket client.

``MemoryServer`` wires the real LoginFactory and SessionRegistry to a
``task.Clock``, ``StringTransport``s and a recording UDP transport, for the
property and limit tests.  ``SyncClient`` drives ``ClientCore`` over plain
blocking sockets against a real twistd (tests/conftest.py ``start_server``):
every packet it sends goes through its hands, so tests can capture, replay
and tamper with them.  Every wait is bounded by a timeout.
"""

import os
import select
import socket
import time

from nacl.public import PrivateKey
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from gamesession.protocol import wire
from gamesession.server.accounts import make_portal
from gamesession.protocol.clientcore import ClientCore, LoginFailed, MessageData, SessionEnded
from gamesession.protocol.datagram import Drop, Kind
from gamesession.protocol.wire import encode_frame, split_frames
from gamesession.keys import decode_key
from gamesession.server.login import LoginFactory
from gamesession.server.registry import SessionRegistry
from gamesession.ops.stats import ServerStats

from fakes import FakeUDP


# -- framing, client side -----------------------------------------------------------

frame_bytes = encode_frame



# -- in memory ------------------------------------------------------------------------

class RecordingApp:
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


class MemoryConnection:
    """One LoginProtocol on a StringTransport, seen from the client's side."""

    def __init__(self, server, protocol, transport):
        self.server = server
        self.protocol = protocol
        self.transport = transport
        self.framing = server.framing
        self.read = 0
        self.rest = b""
        self.core = None

    def feed(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def send(self, frame: bytes) -> None:
        self.feed(frame_bytes(frame, self.framing))

    def frames(self):
        """Frames written by the server since the last call."""
        value = self.transport.value()
        new, self.rest = split_frames(self.rest + value[self.read:], self.framing)
        self.read = len(value)
        return new

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        """The client's side goes away."""
        self.protocol.connectionLost(None)

    def login(self, user: str, password: str = ""):
        """Run the whole login with a ClientCore; its events (Welcome, or a LoginFailed)."""
        self.core = ClientCore(bytes(self.server.key.public_key), user, password)
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

    def server_events(self):
        """Decode what the server sent after login (session_end, data, errors)."""
        events = []
        for frame in self.frames():
            try:
                events.extend(self.core.frame_received(frame)[1])
            except LoginFailed as e:
                events.append(e)
        return events


class MemoryServer:
    """The real login factory and registry on a Clock and fake transports."""

    def __init__(self, framing="int16", limits=None, users=None, login_timeout=10.0, **registry):
        self.framing = framing
        self.clock = task.Clock()
        self.stats = ServerStats()
        self.app = RecordingApp()
        self.udp = FakeUDP()
        self.registry = SessionRegistry(self.clock, application=self.app, stats=self.stats, **registry)
        self.registry.transport = self.udp
        self.key = PrivateKey.generate()
        checkers = []
        if users:
            # Like --auth memory:NAME:PASSWORD (text names and passwords).
            checker = InMemoryUsernamePasswordDatabaseDontUse()
            for name, password in users.items():
                checker.addUser(name, password)
            checkers.append(checker)
        self.factory = LoginFactory(make_portal(checkers), self.registry, self.key, 7001,
                                    self.clock, login_timeout=login_timeout, framing=framing,
                                    limits=limits)
        self.ports = iter(range(20000, 60000))

    def connect(self, host: str = "192.0.2.1") -> MemoryConnection:
        address = IPv4Address("TCP", host, next(self.ports))
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return MemoryConnection(self, protocol, transport)


def check_registry(registry) -> None:
    """The three indexes of a registry describe the same live sessions."""
    sessions = list(registry.by_token.values())
    assert len(sessions) == len(registry.by_user) == len(registry.by_control) == len(registry)
    for token, session in registry.by_token.items():
        assert session.token == token
        assert not session.ended
        assert registry.by_user[session.user] is session
        assert registry.by_control[session.control] is session


# -- real sockets ------------------------------------------------------------------------

class SyncClient:
    """A logged-in player over blocking sockets; raises LoginFailed like ClientCore."""

    def __init__(self, server, user, password="", framing="int16", timeout=5.0, host="127.0.0.1",
                 source="127.0.0.1"):
        self.framing = framing
        self.timeout = timeout
        self.core = ClientCore(decode_key(server.public_key), user, password)
        self.tcp = socket.create_connection((host, server.login_port), timeout=timeout,
                                            source_address=(source, 0))
        self.rest = b""
        self.udp = None
        self.events = []
        self.undecodable = 0
        self.server_udp = (host, server.udp_port)
        try:
            self.send_frame(self.core.hello())
            deadline = time.monotonic() + timeout
            while self.core.welcome is None:
                frame = self.recv_frame(deadline - time.monotonic())
                if frame is None:
                    raise ConnectionError("server closed the connection during login")
                out, events = self.core.frame_received(frame)
                for f in out:
                    self.send_frame(f)
        except BaseException:
            self.close()
            raise
        self.welcome = self.core.welcome
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((source, 0))
        self.send(Kind.KEEPALIVE)

    # TCP
    def send_frame(self, frame: bytes) -> None:
        self.tcp.sendall(frame_bytes(frame, self.framing))

    def recv_frame(self, timeout: float):
        """The next frame, or None when the server closed; socket.timeout if none came."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            frames, rest = split_frames(self.rest, self.framing)
            if frames:
                first = frames[0]
                consumed = len(frame_bytes(first, self.framing))
                self.rest = self.rest[consumed:]
                return first
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame")
            self.tcp.settimeout(left)
            try:
                data = self.tcp.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.rest += data

    def tcp_events(self, timeout: float):
        """Events from TCP frames until the server closes or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self.recv_frame(deadline - time.monotonic())
            except socket.timeout:
                return self.events
            if frame is None:
                return self.events
            try:
                self.events.extend(self.core.frame_received(frame)[1])
            except LoginFailed as e:
                self.events.append(e)

    def message(self, payload: bytes) -> None:
        self.send_frame(self.core.data_message(payload))

    def logout(self, timeout: float = 5.0):
        try:
            self.send_frame(self.core.logout())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the session had already ended (kicked, replaced, timed out)
        events = self.tcp_events(timeout)
        self.close()
        return events

    # UDP
    def packet(self, kind: int, payload: bytes = b"") -> bytes:
        """A sealed packet of this session (sent or not: the caller decides)."""
        return self.core.datagram(kind, payload)

    def send(self, kind: int, payload: bytes = b"") -> bytes:
        packet = self.packet(kind, payload)
        self.udp.sendto(packet, self.server_udp)
        return packet

    def datagrams(self, timeout: float, until=None):
        """Opened (kind, payload) datagrams received within ``timeout``; stops early
        when ``until(kind, payload)`` is true.  Raw packets that do not open are counted
        in ``self.undecodable``."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            ready, _, _ = select.select([self.udp], [], [], left)
            if not ready:
                return got
            packet = self.udp.recv(65536)
            try:
                kind, payload = self.core.datagram_received(packet)
            except Drop:
                self.undecodable += 1
                continue
            got.append((kind, payload))
            if until is not None and until(kind, payload):
                return got

    def ping(self, timeout: float = 1.0) -> bool:
        ping_id = os.urandom(8)
        self.send(Kind.PING, ping_id)
        got = self.datagrams(timeout, until=lambda k, p: k == Kind.PONG and p == ping_id)
        return (Kind.PONG, ping_id) in got

    def close(self) -> None:
        for sock in (self.tcp, self.udp):
            if sock is not None:
                sock.close()


def session_ends(events):
    return [e.reason for e in events if isinstance(e, SessionEnded)]


def messages(events):
    return [e.payload for e in events if isinstance(e, MessageData)]


def error_codes(events):
    return [e.code for e in events if isinstance(e, LoginFailed)]


def read_raw(sock, timeout: float, limit: int = 1 << 20) -> bytes:
    """Everything a raw TCP socket receives until EOF/reset or ``timeout``."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    return data


def decode_clear_error(data: bytes, framing="int16"):
    """The code of a clear error frame a server sent before the handshake (or None)."""
    frames, _ = split_frames(data, framing)
    for frame in frames:
        try:
            message = wire.decode(frame)
        except wire.ProtocolError:
            return None
        if message.get("type") == "error":
            return message.get("code")
    return None


def vm_rss_kib(pid: int) -> int:
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for {}".format(pid))
