"""Adversarial TCP on loopback against a real twistd: garbage, floods, idlers, limits.

Each bad connection gets (at most) one clear error and a close; the server
keeps serving honest logins all along.  Sources 127.0.0.1 and 127.0.0.2 stand
for two addresses.  Every loop is bounded and every wait has a timeout.
"""

import select
import socket
import struct
import time

import pytest

from gamesession.protocol import wire
from gamesession.protocol.clientcore import ClientCore, LoginFailed
from gamesession.protocol.handshake import StreamCipher
from gamesession.keys import decode_key
from gamesession.protocol.wire import ErrorCode

from fakes import error_codes, session_ends
from hardening import (SyncClient, decode_clear_error, frame_bytes, read_raw,
                       read_until_closed, split_frames)

pytestmark = [pytest.mark.network]


def raw(server, source="127.0.0.1", rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.login_port))
    return sock


def answer_to(server, data: bytes, framing="int16", timeout=5.0):
    """Send bytes on a fresh connection; (error code, closed) of what came back."""
    sock = raw(server)
    try:
        sock.sendall(data)
        reply, closed = read_until_closed(sock, timeout)
    finally:
        sock.close()
    return decode_clear_error(reply, framing), closed


def honest_round(server, user="honest", **kw):
    client = SyncClient(server, user, **kw)
    try:
        assert client.ping(timeout=2.0)
    finally:
        client.logout()
    return True


@pytest.mark.timeout(90)
def test_garbage_frames_get_one_error_and_a_close(start_server):
    server = start_server()
    cases = [
        (frame_bytes(b"\xfe" * wire.MAX_FRAME), ErrorCode.BAD_FRAME),  # maximal frame of garbage
        (struct.pack("!H", 0xFFFF) + b"x" * 100, ErrorCode.FRAME_TOO_LONG),
        (frame_bytes(b"{not json"), ErrorCode.BAD_FRAME),
        (frame_bytes(b'{"type": "hello", "x": "\xc3\x28"}'), ErrorCode.BAD_FRAME),  # bad UTF-8
        (frame_bytes(b"[" * 4000 + b"]" * 4000), ErrorCode.BAD_FRAME),
        (frame_bytes(b'{"type": 7}'), ErrorCode.BAD_FRAME),
        (frame_bytes(b'{"type": "login", "user": "a", "password": ""}'), ErrorCode.UNEXPECTED),
        (frame_bytes(b'{"type": "sealed", "box": "AAAA"}'), ErrorCode.UNEXPECTED),
        (frame_bytes(b'{"type": "nope"}'), ErrorCode.UNKNOWN_TYPE),
        (frame_bytes(b'{"type": "hello", "version": 99}'), ErrorCode.BAD_VERSION),
        (frame_bytes(b'{"type": "hello", "version": 1, "client_key": "AAAA"}'), ErrorCode.BAD_FIELD),
        (frame_bytes(wire.encode({"type": "hello", "version": 1,
                                  "client_key": wire.b64(bytes(32))})), ErrorCode.BAD_FIELD),
    ]
    for data, code in cases:
        assert answer_to(server, data) == (code, True), data[:40]
    assert honest_round(server)
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log


@pytest.mark.timeout(90)
def test_a_mebibyte_of_noise(start_server):
    server = start_server()
    noise = bytes((i * 7919 + 13) % 251 for i in range(1 << 20))
    sock = raw(server)
    sent = 0
    try:
        for start in range(0, len(noise), 65536):
            sock.sendall(noise[start:start + 65536])
            sent += 65536
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass  # the server closed on the first bad frame: exactly what we want
    reply, closed = read_until_closed(sock, 5.0)
    sock.close()
    # The first 3479 bytes (the noise's own length prefix) are not JSON: one
    # BAD_FRAME error, then the close; the rest of the noise is never read.
    frames, _ = split_frames(reply)
    assert len(frames) == 1 and closed
    assert decode_clear_error(reply) == ErrorCode.BAD_FRAME
    assert honest_round(server)
    # And in line framing: a megabyte without a newline is one overlong line.
    server = start_server("--framing", "line")
    code, closed = answer_to(server, b"x" * (1 << 20), framing="line")
    assert closed and code in (ErrorCode.FRAME_TOO_LONG, None)
    assert honest_round(server, framing="line")


def handshake(server, source="127.0.0.1"):
    """A raw connection past the handshake: (socket, core)."""
    core = ClientCore(decode_key(server.public_key), "mallory", "")
    sock = raw(server, source)
    sock.sendall(frame_bytes(core.hello()))
    buffered = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        buffered += sock.recv(65536)
        frames, buffered = split_frames(buffered)
        if frames:
            core.frame_received(frames[0])  # also seals a login we do not send:
            core.sender = StreamCipher(core.keys.tcp_c2s, 0)  # start the count again
            return sock, core
    raise AssertionError("no challenge")


def sealed_error(sock, core, timeout=5.0):
    frames, _ = split_frames(read_raw(sock, timeout))
    for frame in frames:
        try:
            core.frame_received(frame)
        except LoginFailed as e:
            return e.code
    return None


@pytest.mark.timeout(90)
def test_messages_in_the_wrong_state(start_server):
    server = start_server()
    # A second clear hello after the challenge.
    sock, core = handshake(server)
    sock.sendall(frame_bytes(core.hello()))
    assert sealed_error(sock, core) == ErrorCode.UNEXPECTED
    sock.close()
    # Logout or data before logging in.
    for message in ({"type": "logout"}, {"type": "data", "data": "aGk="}, {"type": "welcome"}):
        sock, core = handshake(server)
        sock.sendall(frame_bytes(core.seal_message(message)))
        assert sealed_error(sock, core) == ErrorCode.UNEXPECTED
        sock.close()
    # A login on a logged-in connection ends that session, and only that one.
    bystander = SyncClient(server, "bystander")
    client = SyncClient(server, "twice")
    client.send_frame(client.core.seal_message({"type": "login", "user": "x", "password": ""}))
    assert error_codes(client.tcp_events(5.0)) == [ErrorCode.UNEXPECTED]
    client.close()
    assert bystander.ping()
    assert session_ends(bystander.logout()) == ["logout"]
    assert "session ended: user=twice reason=disconnected" in server.log()


@pytest.mark.timeout(120)
def test_hundreds_of_idle_connections_are_closed_at_the_login_timeout(start_server):
    idlers = 300
    server = start_server("--login-timeout", "3", "--max-pending", "1000",
                          "--max-pending-per-address", "1000", "--max-pending-per-subnet", "1000")
    socks = []
    try:
        for _ in range(idlers):
            socks.append(raw(server))
        opened = time.monotonic()
        # Honest players are served meanwhile, from the same address and another.
        assert honest_round(server, "early")
        assert honest_round(server, "other", source="127.0.0.2")
        answers = {}
        pending = {s.fileno(): s for s in socks}
        buffers = {fd: b"" for fd in pending}
        deadline = time.monotonic() + 15
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending.values()), [], [], 1.0)
            for sock in ready:
                fd = sock.fileno()
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    buffers[fd] += chunk
                else:
                    answers[fd] = decode_clear_error(buffers[fd])
                    del pending[fd]
        assert not pending, "{} idle connections still open".format(len(pending))
        assert time.monotonic() - opened >= 2.5  # not closed before the timeout
        assert set(answers.values()) == {ErrorCode.LOGIN_TIMEOUT}
    finally:
        for sock in socks:
            sock.close()
    assert honest_round(server, "late")


@pytest.mark.timeout(60)
def test_pending_connection_limits(start_server):
    # No separate hello deadline (it equals the login timeout): the caps are under test.
    server = start_server("--max-pending-per-address", "5", "--max-pending", "8",
                          "--hello-timeout", "10")
    # A full login first: start_server's readiness probe (a connect and a close)
    # has surely been seen by then, so it holds no pending slot below.
    assert honest_round(server, "first")
    socks = [raw(server) for _ in range(5)]
    try:
        extra = raw(server)
        # Refused: closed before any byte (an admitted silent connection stays
        # open for the 10 s login timeout, as socks[0] shows).
        assert read_until_closed(extra, 3.0) == (b"", True)
        extra.close()
        assert read_until_closed(socks[0], 0.5) == (b"", False)
        # Another address still gets in, until the total is reached.
        others = [raw(server, "127.0.0.2") for _ in range(2)]
        assert honest_round(server, "other", source="127.0.0.3")
        others.append(raw(server, "127.0.0.2"))
        # Full: a newcomer pushes out the longest-idle connection (closed before any byte).
        full = raw(server, "127.0.0.4")
        # One of the idle ones from 127.0.0.1 is closed without a byte (which one
        # is oldest is checked in memory, tests/test_limits.py).
        deadline = time.monotonic() + 3.0
        closed = []
        while not closed and time.monotonic() < deadline:
            ready, _, _ = select.select(socks, [], [], 0.1)
            for sock in ready:
                try:
                    data = sock.recv(100)
                except ConnectionResetError:
                    data = b""
                assert data == b""
                closed.append(sock)
        assert len(closed) == 1
        full.settimeout(0.5)
        with pytest.raises(socket.timeout):
            full.recv(1)  # still open, waiting for its hello
        full.close()
        for sock in others:
            sock.close()
    finally:
        for sock in socks:
            sock.close()
    # Slots come back when the connections go.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            assert honest_round(server, "after")
            break
        except (ConnectionError, OSError):
            time.sleep(0.1)
    else:
        raise AssertionError("slots did not come back")


@pytest.mark.timeout(60)
def test_failed_logins_back_off_per_address(start_server):
    server = start_server("--auth", "memory:alice:secret", "--max-login-failures", "2",
                          "--login-backoff", "30")
    for _ in range(2):  # the 2nd failure starts the wait: the next attempt gets 429
        with pytest.raises(LoginFailed) as failed:
            SyncClient(server, "alice", "guess")
        assert failed.value.code == ErrorCode.AUTH_FAILED
    with pytest.raises(LoginFailed) as failed:
        SyncClient(server, "alice", "secret")
    assert failed.value.code == ErrorCode.TOO_MANY_ATTEMPTS
    assert "try again in" in failed.value.reason
    # Another address is not held back.
    assert honest_round(server, "alice", password="secret", source="127.0.0.2")


@pytest.mark.timeout(90)
def test_a_client_that_does_not_read_is_disconnected(start_server):
    server = start_server("--max-send-buffer", "65536")
    client = SyncClient(server, "sloth")
    client.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = b"z" * wire.MAX_DATA
    frame = frame_bytes(client.core.data_message(payload))  # the server echoes each one
    cut = False
    try:
        for i in range(20000):  # at most ~150 MB; the server gives up long before
            client.tcp.sendall(frame)
            frame = frame_bytes(client.core.data_message(payload))
            if i % 100 == 99 and "does not read" in server.log():
                cut = True
                break
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        cut = True
    assert cut
    deadline = time.monotonic() + 5
    while "does not read" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log()
    assert "does not read" in log
    assert "session ended: user=sloth reason=disconnected" in log
    client.close()
    assert honest_round(server)
