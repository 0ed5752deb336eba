"""``gamesession healthcheck``: is the login service up and speaking the protocol?

Connects to the login port, sends a hello and waits for the challenge.  With
the server's public key (``--server-key`` or ``--key-file``) it also checks
the challenge proves that key, the way a client would.  It never logs in, so
it creates no session; the server sees one connection closed before login.
Exit 0 when healthy, 1 otherwise with one line on stderr saying why.

Plain blocking sockets on purpose: a container health probe should start
fast, do one thing and give up after ``--timeout`` seconds in total.
"""

import socket
import time

from nacl.public import PrivateKey

from gamesession.protocol import wire
from gamesession.protocol.clientcore import ClientCore
from gamesession.protocol.wire import encode_frame, split_frames
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.protocol.wire import ProtocolError


class Unhealthy(Exception):
    """The server did not answer as a healthy gamesession login service."""


def _read_frame(sock, framing: str, deadline: float) -> bytes:
    data = b""
    while True:
        frames, _ = split_frames(data, framing)
        if frames:
            return frames[0]
        if len(data) > wire.MAX_FRAME + 2:
            raise Unhealthy("the answer is not a {}-framed gamesession frame".format(framing))
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise Unhealthy("the server closed the connection without answering the hello"
                            " (a knock gate or a connection limit may be refusing this address)")
        data += chunk


def check(host: str, port: int, timeout: float = 3.0, framing: str = "int16",
          server_key: "bytes | None" = None) -> str:
    """Do the hello/challenge exchange; a description of success, else Unhealthy."""
    deadline = time.monotonic() + timeout
    core = ClientCore(server_key if server_key is not None else
                      bytes(PrivateKey.generate().public_key), "healthcheck", "")
    where = "{}:{}".format(host, port)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(encode_frame(core.hello(), framing))
            message = wire.decode(_read_frame(sock, framing, deadline))
    except socket.timeout:
        raise Unhealthy("{} did not answer within {:g} s".format(where, timeout))
    except ConnectionRefusedError:
        raise Unhealthy("connection refused by {}".format(where))
    except OSError as e:
        raise Unhealthy("{}: {}".format(where, e.strerror or e))
    except ProtocolError as e:
        raise Unhealthy("{} answered something that is not a gamesession frame: {}"
                        .format(where, e.reason))
    if message["type"] == "error":
        raise Unhealthy("{} refused the hello: {} ({})".format(
            where, message.get("reason"), message.get("code")))
    if message["type"] != "challenge":
        raise Unhealthy("{} answered {!r} instead of a challenge".format(where, message["type"]))
    try:
        server_ephemeral = wire.bytes_field(message, "server_key", size=32)
        confirm = wire.bytes_field(message, "confirm", max_size=64)
    except ProtocolError as e:
        raise Unhealthy("{} sent a malformed challenge: {}".format(where, e.reason))
    if server_key is None:
        return "{} answered the hello (protocol {})".format(where, message.get("version"))
    try:
        core.handshake.finish(server_ephemeral, confirm)
    except ServerKeyMismatch:
        raise Unhealthy("server key mismatch: {} did not prove it holds the expected key"
                        .format(where))
    return "{} answered the hello and proved its key (protocol {})".format(
        where, message.get("version"))
