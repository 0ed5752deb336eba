"""The client's side of the protocol, sans-I/O.

Feed it TCP frames and UDP datagrams; it returns frames and datagrams to
send and events to act on.  The Twisted client (``client/gameclient.py``) is
one driver; a pygame or asyncio loop can drive the same object.

After the control connection drops, ``reconnect()`` starts a fresh handshake
on a new connection that resumes the session (``protocol/resume.py``) when
the core holds a ticket, or logs in again; the UDP channel then switches to
the new token and keys (``Resumed`` or a new ``Welcome``).  Counters start at
0 under each new key and nothing is ever sealed under a previous key again;
datagrams still arriving under the previous key are accepted until the first
one under the new key.
"""

import attrs

from gamesession.protocol import resume, rooms, transfer, wire
from gamesession.protocol.datagram import (MAX_PAYLOAD, TOKEN_SIZE, DatagramChannel, Drop, Kind,
                                           split_header)
from gamesession.protocol.handshake import BadBox, ClientHandshake, StreamCipher
# The room events, typed by the shared codec; re-exported as this module's.
from gamesession.protocol.rooms import (  # noqa: F401
    MemberInfo, RoomDatagram, RoomError, RoomInfo, RoomJoined, RoomLabel, RoomLeft, RoomList,
    RoomMessage, RoomPresence)
from gamesession.protocol.transfer import RoomRedirect  # noqa: F401
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


class ResumeRefused(LoginFailed):
    """Error 410: the session cannot be resumed; ``refused`` says why (``ended``: its end reason)."""

    def __init__(self, code: int, reason: str, refused: str, ended: "str | None"):
        super().__init__(code, reason)
        self.refused = refused
        self.ended = ended

    @property
    def final(self) -> bool:
        """The session ended for good (logout, kick, replace, shutdown): do not log in again."""
        return self.ended in resume.FINAL_REASONS


@attrs.frozen
class Welcome:
    """The login succeeded: the session's token, UDP port and timers (seconds)."""

    user: str
    token: bytes
    udp_port: int
    session_timeout: float
    keepalive: float
    # The resume ticket (protocol/resume.py); None when the server does not resume.
    ticket: "resume.Ticket | None" = attrs.field(default=None, repr=False)


@attrs.frozen
class Unsent:
    """A session frame made while reconnecting: seal it with ``seal_message(message)``
    once the session is back (it must go out under the new connection's keys)."""

    message: dict


@attrs.frozen
class Resumed:
    """The session resumed on a new connection: its new token and ticket are in ``welcome``."""

    welcome: Welcome


@attrs.frozen
class Pong:
    """The answer to a TCP ``ping``: the control connection carries frames."""

    ping_id: int


@attrs.frozen
class SessionEnded:
    """The server ended the session; ``reason`` says why (logout, kicked, ...)."""

    reason: str


@attrs.frozen
class MessageData:
    """An application message from the server (TCP)."""

    payload: bytes


# -- rooms ------------------------------------------------------------------------

#: The largest room message (TCP, ``room_message``) in bytes; larger raises PayloadTooLarge.
MAX_ROOM_MESSAGE = rooms.MAX_ROOM_MESSAGE
#: The largest room datagram (UDP, ``room_datagram``) in bytes; keep game
#: datagrams at or under about 1200 bytes to avoid IP fragmentation.
MAX_ROOM_DATAGRAM = rooms.MAX_ROOM_DATAGRAM


class NotInRoom(KeyError):
    """A send to a room this session is not in; nothing was sent."""

    def __str__(self):
        return self.args[0] if self.args else "not in that room"


class RoomState:
    """The client's view of a room it is in, kept up to date by ClientCore.

    ``room`` (8 bytes), ``room_type``, ``member`` (this session's member id),
    ``label``, ``max_members``, ``listed`` and ``members``: member id -> user
    name of everyone in the room, this session included.
    """

    def __init__(self, joined: RoomJoined):
        self.room = joined.room
        self.room_type = joined.room_type
        self.member = joined.member
        self.label = joined.label
        self.max_members = joined.max_members
        self.listed = joined.listed
        self.members = {m.member: m.user for m in joined.members}


class ClientCore:
    """One login and the session that follows, from the client's side.

    Feed it every frame (``frame_received``) and datagram
    (``datagram_received``); send what it returns.  Rooms: the request
    methods (``create_room``, ``join_room``, ``join_or_create``,
    ``leave_room``, ``list_rooms``) return ``(rid, frame)``; the answer is an
    event carrying the same ``rid`` (``RoomJoined``, ``RoomLeft``, ``RoomList``
    or ``RoomError``).  ``rooms`` holds the rooms this session is in, kept up
    to date by the events.
    """

    def __init__(self, server_public_key: bytes, user: str, password: str, ephemeral=None,
                 ticket_login: "dict | None" = None):
        self.server_public_key = bytes(server_public_key)
        self.handshake = ClientHandshake(server_public_key, ephemeral)
        self.user = user
        self.password = password
        # A ``transfer.ticket_login`` message sent instead of the login (see ``follow``).
        self.ticket_login = ticket_login
        self.sender = None
        self.receiver = None
        self.welcome = None
        self.channel = None
        self.rooms = {}  # room id (8 bytes) -> RoomState
        self._joining = {}  # room id -> RoomJoined whose member list continues
        self._last_rid = 0
        #: ROOM_RELAY datagrams for a room this client is not (or not yet) in.
        self.unknown_room_datagrams = 0
        # The channel before the last switch: receives only, until the new one hears.
        self.previous_channel = None
        # The ticket this connection's handshake presents (reconnect), else None: a login.
        self.resuming = None
        # True while the connection carries the session (after welcome or resumed).
        self.established = False

    @property
    def ticket(self) -> "resume.Ticket | None":
        """The ticket to resume with, from the last welcome or resumed."""
        return self.welcome.ticket if self.welcome is not None else None

    def reconnect(self, resume_session: bool = True, ephemeral=None) -> bytes:
        """Start over on a new connection: a fresh handshake; returns its hello.

        With ``resume_session`` and a ticket, the handshake ends in a resume;
        otherwise in a login with the core's credentials.
        """
        self.handshake = ClientHandshake(self.server_public_key, ephemeral)
        self.sender = self.receiver = None
        self.established = False
        self.resuming = self.ticket if resume_session else None
        if resume_session and self.resuming is None:
            raise ValueError("no resume ticket: the server gave none")
        return self.hello()

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
            if self.resuming is not None:
                proof = resume.proof(self.resuming.secret, self.handshake.ephemeral_public,
                                     wire.bytes_field(message, "server_key", size=32),
                                     self.server_public_key)
                return [self.seal_message(resume.resume_message(self.resuming.resume_id, proof))], []
            # A ticket_login is sent once: a later connection logs in with the credentials.
            login = self.ticket_login or {"type": "login", "user": self.user,
                                          "password": self.password}
            self.ticket_login = None
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
        if kind == "welcome" or (kind == "resumed" and self.resuming is not None):
            welcome = Welcome(
                user=wire.text_field(inner, "user", wire.MAX_USER),
                token=wire.bytes_field(inner, "token", size=TOKEN_SIZE),
                udp_port=wire.int_field(inner, "udp_port", 1, 65535),
                session_timeout=float(inner.get("session_timeout", 10)),
                keepalive=float(inner.get("keepalive", 2)),
                ticket=resume.parse_ticket(inner),
            )
            self._switch_channel(welcome)
            self.resuming = None
            self.established = True
            return [], [welcome if kind == "welcome" else Resumed(welcome)]
        if kind == "pong":
            return [], [Pong(wire.int_field(inner, "id", 0, 2**31 - 1))]
        if kind == "error":
            raise self._failure(inner)
        if kind == "session_end":
            return [], [SessionEnded(str(inner.get("reason", "")))]
        if kind == "data":
            return [], [MessageData(wire.bytes_field(inner, "data", max_size=wire.MAX_DATA))]
        if kind in rooms.EVENT_TYPES:
            event = self._room_event(inner)
            return [], [] if event is None else [event]
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type from server")

    def follow(self, redirect: "RoomRedirect", options: "dict | None" = None,
               ephemeral=None) -> "ClientCore":
        """The ClientCore of the move a ``RoomRedirect`` event asks for.

        Connect to ``redirect.host``:``redirect.port`` and drive the new core
        as any: its login is the ticket (a fresh handshake with the same
        pinned key, so new TCP and UDP keys, counters and token: nothing of
        this session's keys is used again), and its first room event is the
        RoomJoined (or RoomError) answering ``redirect.rid``.  Request ids go
        on from this core's.  This session ends with reason ``moved`` once
        the new node took it.  ``options`` go to the room handler.
        """
        core = ClientCore(self.server_public_key, self.user, self.password, ephemeral,
                          transfer.ticket_login(redirect.ticket, redirect.rid, options))
        core._last_rid = self._last_rid
        return core

    def _switch_channel(self, welcome: Welcome) -> None:
        """Use the new token and this handshake's UDP keys; never seal under the old ones."""
        if self.channel is not None:
            self.previous_channel = self.channel
        self.welcome = welcome
        self.channel = DatagramChannel(welcome.token, self.keys.udp_c2s, self.keys.udp_s2c)

    @staticmethod
    def _failure(message: dict) -> LoginFailed:
        code = message.get("code")
        code = code if isinstance(code, int) else 0
        reason = message.get("reason")
        reason = reason if isinstance(reason, str) else "error"
        if code == ErrorCode.RESUME_REFUSED:
            refused, ended = message.get("refused"), message.get("ended")
            return ResumeRefused(code, reason, refused if isinstance(refused, str) else "unknown",
                                 ended if isinstance(ended, str) else None)
        return LoginFailed(code, reason)

    def tcp_ping(self, ping_id: int) -> bytes:
        """A sealed TCP ``ping``; the server answers ``pong`` with the same id."""
        return self.seal_message({"type": "ping", "id": ping_id})

    def logout(self) -> bytes:
        """The frame that ends the session politely."""
        return self.seal_message({"type": "logout"})

    @staticmethod
    def check_message(payload: bytes) -> None:
        """PayloadTooLarge when an application message is over MAX_MESSAGE."""
        if len(payload) > MAX_MESSAGE:
            raise PayloadTooLarge("message of {} bytes is over the {}-byte limit (MAX_MESSAGE)"
                                  .format(len(payload), MAX_MESSAGE))

    def data_message(self, payload: bytes) -> bytes:
        """The sealed frame of an application message; PayloadTooLarge over MAX_MESSAGE."""
        self.check_message(payload)
        return self.session_frame({"type": "data", "data": wire.b64(payload)})

    def connection_lost(self) -> None:
        """The control connection is gone: session frames are Unsent until the next one."""
        self.established = False

    def session_frame(self, message: dict) -> "bytes | Unsent":
        """``message`` sealed, or Unsent while reconnecting (seal it once back)."""
        if not self.established:
            return Unsent(message)
        return self.seal_message(message)

    def datagram_received(self, packet: bytes):
        """(kind, payload) of an authenticated datagram for this session, else Drop."""
        token, counter, box = split_header(packet)
        channel = self.channel
        if channel is None:  # no session yet (a move under way)
            raise Drop("unknown_token")
        if token != channel.token:
            previous = self.previous_channel
            if previous is None or token != previous.token:
                raise Drop("unknown_token")
            kind, payload, _ = previous.open(counter, box)
            if kind == Kind.DISCONNECT:
                # About the state before the switch (our own fallback login
                # replacing the old session): the current session goes on.
                raise Drop("superseded")
            return kind, payload
        kind, payload, _ = channel.open(counter, box)
        self.previous_channel = None
        return kind, payload

    def datagram(self, kind: int, payload: bytes = b"") -> bytes:
        """A sealed datagram; PayloadTooLarge over MAX_DATAGRAM."""
        if len(payload) > MAX_DATAGRAM:
            raise PayloadTooLarge("datagram payload of {} bytes is over the {}-byte limit"
                                  " (MAX_DATAGRAM)".format(len(payload), MAX_DATAGRAM))
        return self.channel.seal(kind, payload)

    # -- rooms: requests ----------------------------------------------------------
    #
    # Each returns (rid, frame): send the frame; the answer is an event with
    # the same rid.  Room ids are 8 bytes or their 16 hex digits.

    def _rid(self) -> int:
        self._last_rid = self._last_rid % rooms.MAX_RID + 1
        return self._last_rid

    def _request(self, build, *args):
        rid = self._rid()
        return rid, self.session_frame(build(rid, *args))

    def create_room(self, room_type: str, label: "dict | None" = None,
                    max_members: "int | None" = None, listed: bool = True,
                    options: "dict | None" = None):
        """(rid, frame): create a room of ``room_type`` (1-32 of ``A-Za-z0-9_.-``) and join it.

        ``label``: a small JSON object others see in room lists; ``max_members``:
        seats (default: the server's --max-room-members); ``listed=False``
        makes a private room, joinable by id only; ``options`` (a small JSON
        object) goes to the room handler's ``join_attempt``.  Answered by
        RoomJoined (``created`` true) or RoomError.
        """
        return self._request(rooms.create, _room_type(room_type), _label(label),
                             _seats(max_members), bool(listed), _label(options, "options"))

    def join_room(self, room, options: "dict | None" = None):
        """(rid, frame): join the room with id ``room`` (``options`` to its handler);
        answered by RoomJoined or RoomError (460 no such room, 461 full, 462
        refused by the handler, 467 already in it...)."""
        return self._request(rooms.join, rooms.room_bytes(room), _label(options, "options"))

    def join_or_create(self, room_type: str, label: "dict | None" = None,
                       max_members: "int | None" = None, options: "dict | None" = None):
        """(rid, frame): join the fullest open listed room of ``room_type`` with a
        free seat that accepts the join, else create one with ``label`` and
        ``max_members``.  Answered by RoomJoined (``created`` says which) or RoomError.
        """
        return self._request(rooms.join_or_create, _room_type(room_type), _label(label),
                             _seats(max_members), _label(options, "options"))

    def leave_room(self, room):
        """(rid, frame): leave ``room``; answered by RoomLeft (reason ``left``) or RoomError."""
        return self._request(rooms.leave, rooms.room_bytes(room))

    def list_rooms(self, room_type: str):
        """(rid, frame): the listed open rooms of ``room_type``; answered by RoomList."""
        return self._request(rooms.list_rooms, _room_type(room_type))

    def room_message(self, room, data: bytes, to=None) -> bytes:
        """The sealed frame of a room message (TCP: reliable, in order).

        ``to``: a member id or a list of them; None sends to every other
        member.  Raises PayloadTooLarge over MAX_ROOM_MESSAGE bytes and
        NotInRoom for a room this session is not in; nothing is sent then.
        """
        room = self._joined(room)
        if len(data) > MAX_ROOM_MESSAGE:
            raise PayloadTooLarge("room message of {} bytes is over the {}-byte limit"
                                  " (MAX_ROOM_MESSAGE)".format(len(data), MAX_ROOM_MESSAGE))
        return self.session_frame(rooms.send(room, data, _targets(to)))

    def room_datagram(self, room, data: bytes, to=None) -> bytes:
        """A sealed ROOM_SEND datagram (UDP: unreliable); ``to`` as in room_message.

        Raises PayloadTooLarge over MAX_ROOM_DATAGRAM bytes and NotInRoom for
        a room this session is not in.
        """
        room = self._joined(room)
        if len(data) > MAX_ROOM_DATAGRAM:
            raise PayloadTooLarge("room datagram of {} bytes is over the {}-byte limit"
                                  " (MAX_ROOM_DATAGRAM)".format(len(data), MAX_ROOM_DATAGRAM))
        return self.datagram(Kind.ROOM_SEND, rooms.pack_room_send(room, data, _targets(to)))

    def _joined(self, room) -> bytes:
        room = rooms.room_bytes(room)
        if room not in self.rooms:
            raise NotInRoom("not in room {}".format(room.hex()))
        return room

    # -- rooms: events ------------------------------------------------------------

    def _room_event(self, message: dict):
        """The event of a room frame (None while a member list continues), state updated."""
        event = rooms.parse_event(message)
        kind = type(event)
        if kind is rooms.RoomJoined:
            return self._room_event_done(event)
        if kind is rooms.RoomMembers:
            joining = self._joining.pop(event.room, None)
            if joining is None:
                raise ProtocolError(ErrorCode.UNEXPECTED, "room_members without room_joined")
            return self._room_event_done(attrs.evolve(
                joining, members=joining.members + event.members, more=event.more))
        if kind is rooms.RoomLeft:
            self.rooms.pop(event.room, None)
            self._joining.pop(event.room, None)
        elif kind is rooms.RoomPresence:
            state = self.rooms.get(event.room)
            if state is not None:
                if event.event == "join":
                    state.members[event.member] = event.user
                elif event.event == "leave":
                    state.members.pop(event.member, None)
                # reconnecting / back: the member keeps its seat.
        elif kind is rooms.RoomLabel:
            state = self.rooms.get(event.room)
            if state is not None:
                state.label = event.label
        return event

    def _room_event_done(self, joined):
        """Emit a RoomJoined once its member list is complete."""
        if joined.more:
            self._joining[joined.room] = joined
            return None
        self.rooms[joined.room] = RoomState(joined)
        return joined

    def room_relay(self, payload: bytes) -> "RoomDatagram | None":
        """The RoomDatagram of a ROOM_RELAY payload; None (counted in
        ``unknown_room_datagrams``) for a room this client is not (yet) in or
        a payload too short to be one."""
        try:
            event = rooms.unpack_room_relay(payload)
        except Drop:
            event = None
        if event is None or event.room not in self.rooms:
            self.unknown_room_datagrams += 1
            return None
        return event


def _room_type(room_type: str) -> str:
    if not rooms.valid_room_type(room_type):
        raise ValueError("a room type is 1-32 characters of A-Z a-z 0-9 _ . -, not {!r}"
                         .format(room_type))
    return room_type


def _label(label, name="label"):
    if label is not None and not isinstance(label, dict):
        raise ValueError("a room {} is a JSON object (a dict), not {!r}".format(name, label))
    return label


def _seats(max_members):
    if max_members is not None and (type(max_members) is not int or max_members < 1):
        raise ValueError("max_members must be a positive integer, not {!r}".format(max_members))
    return max_members


def _targets(to) -> tuple:
    """``to`` (None, a member id or some) as a tuple of member ids."""
    if to is None:
        return ()
    return (to,) if isinstance(to, int) else tuple(to)
