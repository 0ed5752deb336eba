"""The client's side of the protocol, sans-I/O.

Feed it TCP frames and UDP datagrams; it returns frames and datagrams to
send and events to act on.  The Twisted client (``client.py``) is one driver;
a pygame or asyncio loop can drive the same object.
"""

import attrs

from gamesession.protocol import wire
from gamesession.protocol.datagram import MAX_PAYLOAD, TOKEN_SIZE, DatagramChannel, Drop, split_header
from gamesession.protocol.handshake import BadBox, ClientHandshake, StreamCipher
from gamesession.protocol.wire import ErrorCode, ProtocolError


#: The largest application message (``send_message``) a peer accepts, in bytes.
MAX_MESSAGE = wire.MAX_DATA
#: The largest application datagram payload (``send_datagram``), in bytes;
#: keep game datagrams at or under 1200 bytes to avoid IP fragmentation.
MAX_DATAGRAM = MAX_PAYLOAD


class PayloadTooLarge(ValueError):
    """An application payload over the protocol's limit; nothing was sent."""


class LoginFailed(Exception):
    """The server refused the login or the protocol: ``code`` and ``reason`` say why."""

    def __init__(self, code: int, reason: str):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self):
        return "{} ({})".format(self.reason, self.code)


@attrs.frozen
class Welcome:
    """The login succeeded: the session's token, UDP port and timers (seconds)."""

    user: str
    token: bytes
    udp_port: int
    session_timeout: float
    keepalive: float


@attrs.frozen
class SessionEnded:
    """The server ended the session; ``reason`` says why (logout, kicked, ...)."""

    reason: str


@attrs.frozen
class MessageData:
    """An application message from the server (TCP)."""

    payload: bytes


class ClientCore:
    """One login and the session that follows, from the client's side."""

    def __init__(self, server_public_key: bytes, user: str, password: str, ephemeral=None):
        self.handshake = ClientHandshake(server_public_key, ephemeral)
        self.user = user
        self.password = password
        self.sender = None
        self.receiver = None
        self.welcome = None
        self.channel = None

    def hello(self) -> bytes:
        """The first frame to send: the protocol version and this login's ephemeral key."""
        return wire.encode({
            "type": "hello",
            "version": wire.PROTOCOL_VERSION,
            "client_key": wire.b64(self.handshake.ephemeral_public),
        })

    def seal_message(self, message: dict) -> bytes:
        """A message sealed for the server, as a frame (after the challenge)."""
        return wire.encode(wire.sealed(self.sender.seal(wire.encode(message))))

    def frame_received(self, frame: bytes):
        """Handle one frame from the server: (frames to send, events).

        Raises ServerKeyMismatch, LoginFailed (an error from the server) or
        ProtocolError (the server sent something this client cannot use).
        """
        message = wire.decode(frame)
        if self.receiver is None:
            if message["type"] == "error":
                raise self._failure(message)
            if message["type"] != "challenge":
                raise ProtocolError(ErrorCode.UNEXPECTED, "expected a challenge")
            keys = self.handshake.finish(
                wire.bytes_field(message, "server_key", size=32),
                wire.bytes_field(message, "confirm", max_size=64),
            )
            self.keys = keys
            self.sender = StreamCipher(keys.tcp_c2s, 0)
            self.receiver = StreamCipher(keys.tcp_s2c, 1)
            login = {"type": "login", "user": self.user, "password": self.password}
            return [self.seal_message(login)], []
        if message["type"] != "sealed":
            # Errors before the keys existed come in clear; once the channel is
            # sealed the server seals everything, so a clear frame (an error
            # included) is forged or broken: a protocol error, not the server's word.
            raise ProtocolError(ErrorCode.UNEXPECTED,
                                "clear {!r} frame after the handshake".format(message["type"][:40]))
        try:
            inner = wire.decode(self.receiver.open(wire.unseal_envelope(message)))
        except BadBox:
            raise ProtocolError(ErrorCode.BAD_BOX, "server frame did not open")
        kind = inner["type"]
        if kind == "welcome":
            self.welcome = Welcome(
                user=wire.text_field(inner, "user", wire.MAX_USER),
                token=wire.bytes_field(inner, "token", size=TOKEN_SIZE),
                udp_port=wire.int_field(inner, "udp_port", 1, 65535),
                session_timeout=float(inner.get("session_timeout", 10)),
                keepalive=float(inner.get("keepalive", 2)),
            )
            self.channel = DatagramChannel(self.welcome.token, self.keys.udp_c2s, self.keys.udp_s2c)
            return [], [self.welcome]
        if kind == "error":
            raise self._failure(inner)
        if kind == "session_end":
            return [], [SessionEnded(str(inner.get("reason", "")))]
        if kind == "data":
            return [], [MessageData(wire.bytes_field(inner, "data", max_size=wire.MAX_DATA))]
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type from server")

    @staticmethod
    def _failure(message: dict) -> LoginFailed:
        code = message.get("code")
        reason = message.get("reason")
        return LoginFailed(code if isinstance(code, int) else 0,
                           reason if isinstance(reason, str) else "error")

    def logout(self) -> bytes:
        """The frame that ends the session politely."""
        return self.seal_message({"type": "logout"})

    def data_message(self, payload: bytes) -> bytes:
        """The sealed frame of an application message; PayloadTooLarge over MAX_MESSAGE."""
        if len(payload) > MAX_MESSAGE:
            raise PayloadTooLarge("message of {} bytes is over the {}-byte limit (MAX_MESSAGE)"
                                  .format(len(payload), MAX_MESSAGE))
        return self.seal_message({"type": "data", "data": wire.b64(payload)})

    def datagram_received(self, packet: bytes):
        """(kind, payload) of an authenticated datagram for this session, else Drop."""
        token, counter, box = split_header(packet)
        if token != self.channel.token:
            raise Drop("unknown_token")
        kind, payload, _ = self.channel.open(counter, box)
        return kind, payload

    def datagram(self, kind: int, payload: bytes = b"") -> bytes:
        """A sealed datagram; PayloadTooLarge over MAX_DATAGRAM."""
        if len(payload) > MAX_DATAGRAM:
            raise PayloadTooLarge("datagram payload of {} bytes is over the {}-byte limit"
                                  " (MAX_DATAGRAM)".format(len(payload), MAX_DATAGRAM))
        return self.channel.seal(kind, payload)
