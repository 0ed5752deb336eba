"""Property tests of the TCP side: frames in both framings, messages, logins.

Whatever a client sends, ``LoginProtocol`` never raises, never answers with an
internal error (that would be a bug caught by the safety net), and ends either
in a state that waits for more or with one error message and a close.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamesession.protocol import wire
from gamesession.protocol.clientcore import ClientCore, LoginFailed, Welcome
from gamesession.server.limits import Limits, LoginAttempts, PendingLogins
from gamesession.protocol.wire import ErrorCode

from gamesession.protocol.wire import encode_frame as frame_bytes, split_frames

from fakes import Harness, RecordingApp, check_registry

pytestmark = pytest.mark.timeout(300)

FRAMINGS = ["int16", "line"]
CODES = {int(c) for c in ErrorCode} - {int(ErrorCode.INTERNAL)}
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
types = st.sampled_from(sorted(["hello", "challenge", "login", "welcome", "logout", "data",
                                "session_end", "error", "sealed"])) | st.text(max_size=12)
messages = st.builds(
    lambda kind, fields: dict(fields, type=kind),
    types, st.dictionaries(st.sampled_from(["version", "client_key", "user", "password", "box",
                                            "data", "code", "reason"]) | st.text(max_size=6),
                           json_values, max_size=4))


def chunks(data: bytes, cuts):
    """``data`` split at the given cut points (arbitrary TCP segmenting)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def assert_clean_ending(conn, server):
    """Every output frame is a message; a closed connection ended with one error."""
    frames, rest = split_frames(conn.transport.value(), conn.framing)
    assert rest == b""
    assert server.stats.protocol_errors["internal"] == 0
    decoded = []
    for frame in frames:
        decoded.append(wire.decode(frame))
    if conn.closed:
        assert conn.protocol.state == "closed"
        last = decoded[-1]
        if last["type"] == "error":
            assert last["code"] in CODES
        else:  # after the handshake the error is sealed
            assert last["type"] == "sealed"
    else:
        assert conn.protocol.state in ("hello", "login", "active")
    check_registry(server.registry)


@SETTINGS
@given(framing=st.sampled_from(FRAMINGS), data=st.binary(max_size=20000),
       cuts=st.lists(st.integers(0, 20000), max_size=8))
def test_random_bytes_never_raise(framing, data, cuts):
    server = Harness(application=RecordingApp(), framing=framing)
    conn = server.connect()
    for chunk in chunks(data, cuts):
        conn.feed(chunk)
    assert_clean_ending(conn, server)
    assert conn.protocol.state in ("hello", "closed")
    assert len(server.registry) == 0


@SETTINGS
@given(framing=st.sampled_from(FRAMINGS), frames=st.lists(
    st.one_of(
        messages.map(lambda m: json.dumps(m).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=300),
        st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ), max_size=6))
def test_random_frames_and_messages_in_clear(framing, frames):
    server = Harness(application=RecordingApp(), framing=framing)
    conn = server.connect()
    for frame in frames:
        if framing == "line":
            frame = frame.replace(b"\n", b" ")
        conn.send(frame)
    assert_clean_ending(conn, server)
    assert len(server.registry) == 0


@SETTINGS
@given(size=st.integers(wire.MAX_FRAME - 2, wire.MAX_FRAME + 2),
       byte=st.integers(0, 255), framing=st.sampled_from(FRAMINGS))
def test_frames_around_the_maximum(size, byte, framing):
    server = Harness(application=RecordingApp(), framing=framing)
    conn = server.connect()
    body = bytes([byte if byte != 10 else 32]) * size
    conn.feed(frame_bytes(body, framing) if size <= 65535 else body)
    assert_clean_ending(conn, server)
    assert conn.closed  # no such frame is a hello


def logged_in_or_refused(conn, events):
    if any(isinstance(e, Welcome) for e in events):
        return "welcome"
    failures = [e for e in events if isinstance(e, LoginFailed)]
    assert failures, events
    assert failures[0].code in CODES
    return failures[0].code


@SETTINGS
@given(framing=st.sampled_from(FRAMINGS), user=json_values | st.text(max_size=80),
       password=json_values | st.text(max_size=300),
       extra=st.dictionaries(st.text(max_size=6), json_values, max_size=3))
def test_login_messages(framing, user, password, extra):
    server = Harness(application=RecordingApp(), framing=framing, users={"alice": "pw"},
                     limits=Limits(PendingLogins(), LoginAttempts(free=1)))
    conn = server.connect()
    conn.core = core = ClientCore(bytes(server.key.public_key), "unused", "")
    conn.send(core.hello())
    core.frame_received(conn.frames()[0])
    message = dict(extra, type="login", user=user, password=password)
    conn.send(core.seal_message(message))
    events = conn.server_events()
    outcome = logged_in_or_refused(conn, events)
    if outcome == "welcome":
        assert user == "alice" and password == "pw"
        assert server.registry.by_user["alice"].control is conn.protocol
    else:
        assert conn.closed
        assert "alice" not in server.registry.by_user or user == "alice"
    assert_clean_ending(conn, server)


@SETTINGS
@given(framing=st.sampled_from(FRAMINGS), inner=st.lists(
    st.one_of(messages.map(wire.encode), st.binary(max_size=200)), min_size=1, max_size=5))
def test_random_sealed_messages_after_login(framing, inner):
    """A logged-in client sending anything: its own session ends or goes on; no other."""
    server = Harness(application=RecordingApp(), framing=framing)
    bystander = server.connect("198.51.100.1")
    bystander.attempt_login("bob")
    conn = server.connect()
    conn.attempt_login("alice")
    for plain in inner:
        conn.send(wire.encode(wire.sealed(conn.core.sender.seal(plain))))
    assert_clean_ending(conn, server)
    if conn.closed:
        assert "alice" not in server.registry.by_user
    else:
        assert server.registry.by_user["alice"].control is conn.protocol
    assert server.registry.by_user["bob"].control is bystander.protocol
    assert not bystander.closed


@SETTINGS
@given(framing=st.sampled_from(FRAMINGS), flip=st.integers(0, 10**6))
def test_tampered_sealed_frames_close_without_harm(framing, flip):
    server = Harness(application=RecordingApp(), framing=framing)
    conn = server.connect()
    conn.attempt_login("alice")
    box = bytearray(conn.core.sender.seal(wire.encode({"type": "data", "data": "aGk="})))
    index = flip % (len(box) * 8)
    box[index // 8] ^= 1 << (index % 8)
    conn.send(wire.encode(wire.sealed(bytes(box))))
    assert conn.closed
    assert_clean_ending(conn, server)
    assert server.stats.protocol_errors["bad_box"] == 1
    assert len(server.registry) == 0
