"""The client's side of the protocol, sans-I/O.

Feed it TCP frames and UDP datagrams; it returns frames and datagrams to
send and events to act on.  The Twisted client (``client.py``) is one driver;
a pygame or asyncio loop can drive the same object.
"""

import re

import attrs

from gamesession.protocol import wire
from gamesession.protocol.datagram import MAX_PAYLOAD, TOKEN_SIZE, DatagramChannel, Drop, Kind, split_header
from gamesession.protocol.handshake import BadBox, ClientHandshake, StreamCipher
from gamesession.protocol.wire import ErrorCode, ProtocolError


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
    user: str
    token: bytes
    udp_port: int
    session_timeout: float
    keepalive: float


@attrs.frozen
class SessionEnded:
    reason: str


@attrs.frozen
class MessageData:
    payload: bytes


# -- rooms ------------------------------------------------------------------------

#: The largest room message (TCP) a client sends, in bytes; the server refuses more.
MAX_ROOM_MESSAGE = wire.MAX_DATA
MAX_RID = 2 ** 31 - 1
MAX_ROOM_TYPE = 32
ROOM_ID_SIZE = 8
MAX_MEMBER_ID = 2 ** 32 - 1
MAX_MEMBERS = 65535
MAX_LISTED = 65535
_ROOM_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_ROOM_ID = re.compile(r"[0-9a-f]{16}")


class PayloadTooLarge(ValueError):
    """An application payload over the protocol's limit; nothing was sent."""


class NotInRoom(KeyError):
    """A send to a room this session is not in; nothing was sent."""

    def __str__(self):
        return self.args[0] if self.args else "not in that room"


@attrs.frozen
class RoomMember:
    """A room member as the others see it: its per-room id and its user name."""

    member: int
    user: str


@attrs.frozen
class RoomJoined:
    """This session is now in ``room`` (the answer to request ``rid``).

    ``member`` is this session's member id there, ``members`` everyone in
    the room (this session included), ``created`` whether the request made
    the room.
    """

    rid: int
    room: str
    room_type: str
    member: int
    label: dict
    max_members: int
    listed: bool
    created: bool
    members: tuple


@attrs.frozen
class RoomLeft:
    """This session is no longer in ``room``: ``reason`` is ``left`` (it asked,
    then ``rid`` is its request), ``kicked``, ``closed``, ..."""

    room: str
    reason: str
    rid: "int | None" = None


@attrs.frozen
class RoomPresence:
    """Another member joined (``event == "join"``) or left (``"leave"``, with ``reason``)."""

    room: str
    event: str
    member: int
    user: str
    reason: "str | None" = None


@attrs.frozen
class RoomMessage:
    """A room message (TCP) from member ``sender`` (``user``); sender 0 is the
    room's server-side handler (``user`` is then empty).  The server stamps
    the sender: it cannot be forged."""

    room: str
    sender: int
    user: str
    data: bytes


@attrs.frozen
class RoomDatagram:
    """A room datagram (UDP), as RoomMessage."""

    room: str
    sender: int
    user: str
    data: bytes


@attrs.frozen
class RoomLabel:
    """The room's handler changed its label."""

    room: str
    label: dict


@attrs.frozen
class RoomInfo:
    """One entry of a room list."""

    room: str
    room_type: str
    label: dict
    members: int
    max_members: int


@attrs.frozen
class RoomList:
    """The answer to ``list_rooms`` (request ``rid``): a tuple of RoomInfo."""

    rid: int
    rooms: tuple


@attrs.frozen
class RoomError:
    """A refused room request (``rid``; None when it answers no request):
    ``code`` is one of 460-468 (docs/protocol.md), ``reason`` says why.
    The session goes on."""

    rid: "int | None"
    code: int
    reason: str


class RoomState:
    """The client's view of a room it is in, kept up to date by ClientCore:
    ``members`` maps member id -> user name (this session included)."""

    def __init__(self, joined: RoomJoined):
        self.room = joined.room
        self.room_type = joined.room_type
        self.member = joined.member
        self.label = joined.label
        self.max_members = joined.max_members
        self.listed = joined.listed
        self.members = {m.member: m.user for m in joined.members}


_ROOM_EVENTS = {
    "room_joined": "_room_joined",
    "room_left": "_room_left",
    "room_presence": "_room_presence",
    "room_message": "_room_message",
    "room_label": "_room_label",
    "room_rooms": "_room_rooms",
    "room_error": "_room_error",
}


def check_room_type(room_type: str) -> str:
    if not isinstance(room_type, str) or not _ROOM_TYPE.fullmatch(room_type):
        raise ValueError("a room type is 1-32 characters of A-Z a-z 0-9 _ . -, not {!r}"
                         .format(room_type))
    return room_type


def check_room_id(room: str) -> str:
    if not isinstance(room, str) or not _ROOM_ID.fullmatch(room):
        raise ValueError("a room id is 16 lowercase hex digits, not {!r}".format(room))
    return room


def _room_options(message, label, max_members):
    if label is not None:
        if not isinstance(label, dict):
            raise ValueError("a room label is a JSON object (a dict)")
        message["label"] = label
    if max_members is not None:
        if type(max_members) is not int or max_members < 1:
            raise ValueError("max_members must be a positive integer")
        message["max_members"] = max_members


def _targets(to) -> list:
    if to is None:
        return []
    targets = [to] if isinstance(to, int) else list(to)
    if len(targets) > 255 or any(type(t) is not int or not 1 <= t <= MAX_MEMBER_ID for t in targets):
        raise ValueError("to is a member id or a list of at most 255 member ids")
    return targets


def _room_field(message):
    room = message.get("room")
    if not isinstance(room, str) or not _ROOM_ID.fullmatch(room):
        raise ProtocolError(ErrorCode.BAD_FIELD, "room must be 16 lowercase hex digits")
    return room


def _rid_field(message):
    return wire.int_field(message, "rid", 0, MAX_RID)


def _reason(message):
    reason = message.get("reason")
    return reason if isinstance(reason, str) else ""


def _bool_field(message, name):
    value = message.get(name)
    if not isinstance(value, bool):
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be true or false".format(name))
    return value


def _label_field(message):
    label = message.get("label", {})
    if not isinstance(label, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "label must be an object")
    return label


def _list_field(message, name, most):
    value = message.get(name)
    if not isinstance(value, list) or len(value) > most:
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be a list".format(name))
    return value


def _member(entry) -> RoomMember:
    if not isinstance(entry, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "members must hold objects")
    return RoomMember(wire.int_field(entry, "member", 1, MAX_MEMBER_ID),
                      wire.text_field(entry, "user", wire.MAX_USER))


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

    def __init__(self, server_public_key: bytes, user: str, password: str, ephemeral=None):
        self.handshake = ClientHandshake(server_public_key, ephemeral)
        self.user = user
        self.password = password
        self.sender = None
        self.receiver = None
        self.welcome = None
        self.channel = None
        self.rooms = {}  # room id (16 hex digits) -> RoomState
        self._last_rid = 0
        #: ROOM_RELAY datagrams for a room this client is not (or not yet) in.
        self.unknown_room_datagrams = 0

    def hello(self) -> bytes:
        return wire.encode({
            "type": "hello",
            "version": wire.PROTOCOL_VERSION,
            "client_key": wire.b64(self.handshake.ephemeral_public),
        })

    def seal_message(self, message: dict) -> bytes:
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
        if message["type"] == "error":
            # Errors before the keys existed come in clear; later ones sealed.
            raise self._failure(message)
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
        if kind in _ROOM_EVENTS:
            return [], [getattr(self, _ROOM_EVENTS[kind])(inner)]
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type from server")

    @staticmethod
    def _failure(message: dict) -> LoginFailed:
        code = message.get("code")
        reason = message.get("reason")
        return LoginFailed(code if isinstance(code, int) else 0,
                           reason if isinstance(reason, str) else "error")

    def logout(self) -> bytes:
        return self.seal_message({"type": "logout"})

    def data_message(self, payload: bytes) -> bytes:
        return self.seal_message({"type": "data", "data": wire.b64(payload)})

    def datagram_received(self, packet: bytes):
        """(kind, payload) of an authenticated datagram for this session, else Drop."""
        token, counter, box = split_header(packet)
        if token != self.channel.token:
            raise Drop("unknown_token")
        kind, payload, _ = self.channel.open(counter, box)
        return kind, payload

    def datagram(self, kind: int, payload: bytes = b"") -> bytes:
        return self.channel.seal(kind, payload)

    # -- rooms: requests ----------------------------------------------------------

    def _request(self, message: dict):
        self._last_rid = self._last_rid % MAX_RID + 1
        message["rid"] = self._last_rid
        return self._last_rid, self.seal_message(message)

    def create_room(self, room_type: str, label: "dict | None" = None,
                    max_members: "int | None" = None, listed: bool = True):
        """(rid, frame) of a request to create a room of ``room_type``.

        ``label``: a small JSON object others see in room lists; ``max_members``:
        seats (default: the server's --max-room-members); ``listed=False``
        makes a private room, joinable by id only.  Answered by RoomJoined
        (``created=True``) or RoomError.
        """
        message = {"type": "room_create", "room_type": check_room_type(room_type),
                   "listed": bool(listed)}
        _room_options(message, label, max_members)
        return self._request(message)

    def join_room(self, room: str):
        """(rid, frame) of a request to join the room with id ``room`` (16 hex digits).

        Answered by RoomJoined or RoomError (460 no such room, 461 full, ...).
        """
        return self._request({"type": "room_join", "room": check_room_id(room)})

    def join_or_create(self, room_type: str, label: "dict | None" = None,
                       max_members: "int | None" = None):
        """(rid, frame): join the fullest open listed room of ``room_type`` that
        has a seat and accepts the join, else create one (with ``label`` and
        ``max_members``).  Answered by RoomJoined (``created`` says which) or RoomError.
        """
        message = {"type": "room_join_or_create", "room_type": check_room_type(room_type)}
        _room_options(message, label, max_members)
        return self._request(message)

    def leave_room(self, room: str):
        """(rid, frame) of a request to leave ``room``; answered by RoomLeft (reason ``left``)."""
        return self._request({"type": "room_leave", "room": check_room_id(room)})

    def list_rooms(self, room_type: str):
        """(rid, frame) of a request for the listed open rooms of ``room_type``; answered by RoomList."""
        return self._request({"type": "room_list", "room_type": check_room_type(room_type)})

    def room_message(self, room: str, data: bytes, to=None) -> bytes:
        """The sealed frame of a room message (TCP: reliable, ordered).

        ``to``: a member id or a list of them; None sends to every other
        member.  Raises PayloadTooLarge over MAX_ROOM_MESSAGE bytes and
        NotInRoom for a room this session is not in; nothing is sent then.
        """
        self._joined(room)
        if len(data) > MAX_ROOM_MESSAGE:
            raise PayloadTooLarge("room message of {} bytes is over the {}-byte limit"
                                  " (MAX_ROOM_MESSAGE)".format(len(data), MAX_ROOM_MESSAGE))
        message = {"type": "room_send", "room": room, "data": wire.b64(data)}
        targets = _targets(to)
        if targets:
            message["to"] = targets
        return self.seal_message(message)

    def room_datagram(self, room: str, data: bytes, to=None) -> bytes:
        """A sealed ROOM_SEND datagram (UDP: unreliable); ``to`` as in room_message.

        Raises PayloadTooLarge over MAX_DATAGRAM (less the room header) and
        NotInRoom for a room this session is not in.
        """
        self._joined(room)
        targets = _targets(to)
        payload = bytes.fromhex(room) + bytes((len(targets),)) + b"".join(
            t.to_bytes(4, "little") for t in targets) + data
        return self.datagram(Kind.ROOM_SEND, payload)

    def _joined(self, room: str) -> "RoomState":
        state = self.rooms.get(room)
        if state is None:
            raise NotInRoom("not in room {!r}".format(room))
        return state

    # -- rooms: events ------------------------------------------------------------

    def _room_joined(self, message: dict) -> "RoomJoined":
        members = tuple(_member(m) for m in _list_field(message, "members", MAX_MEMBERS))
        event = RoomJoined(
            rid=_rid_field(message), room=_room_field(message),
            room_type=wire.text_field(message, "room_type", MAX_ROOM_TYPE),
            member=wire.int_field(message, "member", 1, MAX_MEMBER_ID),
            label=_label_field(message), max_members=wire.int_field(message, "max_members", 1, MAX_MEMBERS),
            listed=_bool_field(message, "listed"), created=_bool_field(message, "created"),
            members=members)
        self.rooms[event.room] = RoomState(event)
        return event

    def _room_left(self, message: dict) -> "RoomLeft":
        event = RoomLeft(room=_room_field(message), reason=_reason(message),
                         rid=_rid_field(message) if "rid" in message else None)
        self.rooms.pop(event.room, None)
        return event

    def _room_presence(self, message: dict) -> "RoomPresence":
        what = message.get("event")
        if what not in ("join", "leave"):
            raise ProtocolError(ErrorCode.BAD_FIELD, "event must be join or leave")
        event = RoomPresence(
            room=_room_field(message), event=what,
            member=wire.int_field(message, "member", 1, MAX_MEMBER_ID),
            user=wire.text_field(message, "user", wire.MAX_USER),
            reason=_reason(message) if what == "leave" else None)
        state = self.rooms.get(event.room)
        if state is not None:
            if what == "join":
                state.members[event.member] = event.user
            else:
                state.members.pop(event.member, None)
        return event

    def _room_message(self, message: dict) -> "RoomMessage":
        room = _room_field(message)
        sender = wire.int_field(message, "from", 0, MAX_MEMBER_ID)
        return RoomMessage(room=room, sender=sender, user=self._user_of(room, sender),
                           data=wire.bytes_field(message, "data", max_size=MAX_ROOM_MESSAGE))

    def _room_label(self, message: dict) -> "RoomLabel":
        event = RoomLabel(room=_room_field(message), label=_label_field(message))
        state = self.rooms.get(event.room)
        if state is not None:
            state.label = event.label
        return event

    def _room_rooms(self, message: dict) -> "RoomList":
        rooms = []
        for entry in _list_field(message, "rooms", MAX_LISTED):
            if not isinstance(entry, dict):
                raise ProtocolError(ErrorCode.BAD_FIELD, "rooms must hold objects")
            rooms.append(RoomInfo(
                room=_room_field(entry), room_type=wire.text_field(entry, "room_type", MAX_ROOM_TYPE),
                label=_label_field(entry), members=wire.int_field(entry, "members", 0, MAX_MEMBERS),
                max_members=wire.int_field(entry, "max_members", 1, MAX_MEMBERS)))
        return RoomList(rid=_rid_field(message), rooms=tuple(rooms))

    def _room_error(self, message: dict) -> "RoomError":
        code = message.get("code")
        return RoomError(rid=_rid_field(message) if "rid" in message else None,
                         code=code if type(code) is int else 0, reason=_reason(message))

    def _user_of(self, room: str, member: int) -> str:
        if member == 0:
            return ""
        state = self.rooms.get(room)
        return state.members.get(member, "") if state is not None else ""

    def room_datagram_event(self, payload: bytes) -> "RoomDatagram | None":
        """The RoomDatagram of a ROOM_RELAY payload; None (counted in
        ``unknown_room_datagrams``) for a room this client is not in or a
        payload too short to be one."""
        if len(payload) < ROOM_ID_SIZE + 4:
            self.unknown_room_datagrams += 1
            return None
        room = payload[:ROOM_ID_SIZE].hex()
        if room not in self.rooms:
            self.unknown_room_datagrams += 1
            return None
        sender = int.from_bytes(payload[ROOM_ID_SIZE:ROOM_ID_SIZE + 4], "little")
        return RoomDatagram(room=room, sender=sender, user=self._user_of(room, sender),
                            data=payload[ROOM_ID_SIZE + 4:])
