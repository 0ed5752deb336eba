"""Helpers for the hardening tests against a real server: a blocking socket client.

``SyncClient`` drives ``ClientCore`` over plain blocking sockets against a
real twistd (tests/conftest.py ``start_server``): every packet it sends goes
through its hands, so tests can capture, replay and tamper with them.  Every
wait is bounded by a timeout.  (The in-memory server is tests/fakes.py
``Harness``.)
"""

import os
import select
import socket
import time

from gamesession.keys import decode_key
from gamesession.protocol import wire
from gamesession.protocol.clientcore import ClientCore, LoginFailed
from gamesession.protocol.datagram import Drop, Kind
from gamesession.protocol.wire import encode_frame, split_frames


# -- framing, client side -----------------------------------------------------------

frame_bytes = encode_frame


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


def read_raw(sock, timeout: float, limit: int = 1 << 20) -> bytes:
    """Everything a raw TCP socket receives until EOF/reset or ``timeout``."""
    return read_until_closed(sock, timeout, limit)[0]


def read_until_closed(sock, timeout: float, limit: int = 1 << 20):
    """(bytes received, closed): closed is True on EOF or reset, False if
    ``timeout`` passed (or ``limit`` bytes came) with the connection still open."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def challenged(server, sock) -> bool:
    """Send a hello on an open raw connection; whether a challenge came back
    (the connection was admitted, and is now mid-login)."""
    core = ClientCore(decode_key(server.public_key), "probe", "")
    sock.sendall(frame_bytes(core.hello()))
    data = b""
    while True:
        frames, _ = split_frames(data)
        if frames:
            return len(frames) == 1 and wire.decode(frames[0])["type"] == "challenge"
        more, _ = read_until_closed(sock, 5.0, limit=1)
        if not more:
            return False
        data += more


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
