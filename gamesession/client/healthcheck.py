"""``gamesession healthcheck``: is the login service up and speaking the protocol?

Connects to the login port, sends a hello and waits for the challenge.  With
the server's public key (``--server-key`` or ``--key-file``) it also checks
the challenge proves that key, the way a client would.  It never logs in, so
it creates no session; the server sees one connection closed before login.
Exit 0 when healthy, 1 otherwise with one line on stderr saying why.

Behind a knock gate (``--knock``), pass the same ``--knock`` (and
``--knock-secret``) a client would: the check knocks first, from the address
it then connects from, so it is counted as an allowed connection rather than
a rejected one (a container's health check behind docker-compose.knock.yml).

Plain blocking sockets on purpose: a container health probe should start
fast, do one thing and give up after ``--timeout`` seconds in total.
"""

import ipaddress
import os
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
                            " (a knock gate or a connection limit may be refusing this address;"
                            " behind a knock gate pass --knock)")
        data += chunk


def send_knocks(host: str, ports, secret: "bytes | None" = None, spacing: float = 0.02,
                server_id: bytes = b"") -> None:
    """Send the knock sequence to ``host`` from one blocking UDP socket.

    With ``secret``, knocks are authenticated for the local address the
    kernel routes to ``host`` (what the server sees without NAT).
    """
    from gamesession.knock.client import source_address
    from gamesession.knock.rule import make_client_knocks

    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        ip = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0]
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    source = source_address(ip, ports[0]) if secret is not None else ""
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        for i, (knock_port, datagram) in enumerate(
                make_client_knocks(ports, secret, source, time.time(), os.urandom, server_id)):
            if i and spacing > 0:
                time.sleep(spacing)
            udp.sendto(datagram, (ip, knock_port))


def check(host: str, port: int, timeout: float = 3.0, framing: str = "int16",
          server_key: "bytes | None" = None, knock=None, knock_secret: "bytes | None" = None,
          settle: float = 0.05, knock_server_id: bytes = b"") -> str:
    """Do the hello/challenge exchange; a description of success, else Unhealthy.

    With ``knock`` (a port sequence), send the knocks first, then wait
    ``settle`` seconds for the gate to open.
    """
    deadline = time.monotonic() + timeout
    if knock:
        try:
            send_knocks(host, knock, knock_secret, server_id=knock_server_id)
        except OSError as e:
            raise Unhealthy("cannot send the knocks to {}: {}".format(host, e.strerror or e))
        time.sleep(settle)
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
    except ConnectionResetError:
        raise Unhealthy("{} reset the connection without answering the hello (a knock gate or a"
                        " connection limit may be refusing this address; behind a knock gate"
                        " pass --knock)".format(where))
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
