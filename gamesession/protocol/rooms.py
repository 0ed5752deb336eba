"""Rooms on the wire: the room frames (TCP) and the room datagrams (UDP), both ways.

Sans-I/O, shared by the server and the client; docs/protocol.md, "Rooms".

TCP: every room message is an inner frame of the sealed phase.  Requests
from the client carry a ``rid`` that the answer (success or ``room_error``)
echoes.  The ``parse_*`` functions raise ``wire.ProtocolError`` for a
malformed frame (fatal: error and close, as any malformed frame) and
``RoomRefused`` for a well-formed request the server refuses without closing
(answered with ``room_error``).  The constructors build the dicts that
``wire.encode`` turns into frames (the client seals them with
``ClientCore.seal_message``, the server with its control channel).

UDP: two datagram kinds (``datagram.Kind.ROOM_SEND`` from the client,
``Kind.ROOM_RELAY`` from the server) whose payloads ``pack_room_send`` /
``unpack_room_send`` and ``pack_room_relay`` / ``unpack_room_relay`` build and
read.  A payload that does not parse raises ``datagram.Drop`` (dropped
silently, counted as ``bad_room_datagram``).

Room ids are 8 bytes (``bytes``) in this module's API and on UDP, 16 lowercase
hex characters in JSON.  Member ids are unsigned 32-bit ints, 1, 2, 3, ... per
room; 0 is the room itself (a server-side handler) as a sender.
"""

import re
import struct

import attrs

from gamesession.protocol import transfer, wire
from gamesession.protocol.datagram import MAX_PAYLOAD, Drop
from gamesession.protocol.wire import ErrorCode, ProtocolError

ROOM_ID_SIZE = 8
MAX_RID = 2 ** 31 - 1
MAX_MEMBER_ID = 2 ** 32 - 1
HANDLER = 0  # the member id of the room itself (its server-side handler) as a sender
MAX_ROOM_TYPE = 32
ROOM_TYPE_PATTERN = re.compile(r"\A[A-Za-z0-9_.-]{1,32}\Z")
# Room message size (TCP room_send / room_message): the same as a plain ``data``.
MAX_ROOM_MESSAGE = wire.MAX_DATA
DEFAULT_MAX_LABEL_BYTES = 512
# --max-label-bytes may not exceed this: room_joined must fit one frame.
MAX_LABEL_BYTES_LIMIT = 2048
# Targets one room_send or ROOM_SEND may name (the UDP count is one byte).
MAX_TARGETS = 255
# Refusal and leave texts are cut to this many characters.
MAX_REASON = 200
# Room datagram data: whatever leaves a ROOM_RELAY (8 + 4 bytes of header) within MAX_PAYLOAD.
MAX_ROOM_DATAGRAM = MAX_PAYLOAD - ROOM_ID_SIZE - 4

LEAVE_REASONS = ("left", "logout", "timeout", "kicked", "disconnected", "replaced",
                 "shutdown", "closed", "moved")
# "reconnecting" and "back": a member's session was suspended and resumed
# (session resume, docs/protocol.md §8); the member keeps its seat meanwhile.
PRESENCE_EVENTS = ("join", "leave", "reconnecting", "back")

REQUEST_TYPES = ("room_create", "room_join", "room_join_or_create", "room_leave",
                 "room_list", "room_send")
EVENT_TYPES = ("room_joined", "room_members", "room_left", "room_presence", "room_message",
               "room_label", "room_rooms", "room_error", "room_redirect")

# Largest inner frame whose sealed envelope {"box": base64(inner + 16-byte tag),
# "type": "sealed"} still fits wire.MAX_FRAME: 4 * ceil((n + 16) / 3) + 26 <= 8192.
MAX_INNER_FRAME = (wire.MAX_FRAME - 26) // 4 * 3 - 16
# More rooms than this never fit one room_rooms frame (each entry is over 60 bytes).
MAX_LISTED = MAX_INNER_FRAME // 60

_ROOM_HEX = re.compile(r"\A[0-9a-f]{16}\Z")
_u32 = struct.Struct("<I")


class RoomRefused(Exception):
    """A room request refused without closing the connection: answered by ``room_error``."""

    def __init__(self, code: ErrorCode, reason: str, rid: "int | None" = None):
        super().__init__(code, reason, rid)
        self.code = code
        self.reason = reason
        self.rid = rid

    def message(self) -> dict:
        return error(self.code, self.reason, self.rid)

    def __str__(self):
        return "{} ({})".format(self.reason, int(self.code))


# -- identifiers -------------------------------------------------------------------


def room_hex(room: bytes) -> str:
    """A room id as it appears in JSON: 16 lowercase hex characters."""
    return room.hex()


def room_bytes(room) -> bytes:
    """A room id (8 bytes, or its 16-hex text, either case) as 8 bytes; ValueError otherwise."""
    if isinstance(room, (bytes, bytearray)):
        if len(room) != ROOM_ID_SIZE:
            raise ValueError("a room id is {} bytes".format(ROOM_ID_SIZE))
        return bytes(room)
    if isinstance(room, str) and _ROOM_HEX.match(room.lower()):
        return bytes.fromhex(room)
    raise ValueError("a room id is 16 hex characters")


def label_size(label: dict) -> int:
    """Bytes a label counts against ``--max-label-bytes``: its compact JSON as sent.

    Sent means ``wire.encode``: separators ``,`` and ``:``, sorted keys,
    non-ASCII as ``\\uXXXX`` escapes.  (Measured as sent so that the limit
    bounds frame sizes; docs/protocol.md.)
    """
    return len(wire.encode(label))


def valid_room_type(room_type: str) -> bool:
    return isinstance(room_type, str) and ROOM_TYPE_PATTERN.match(room_type) is not None


def check_label(label, max_label_bytes: int = DEFAULT_MAX_LABEL_BYTES,
                rid: "int | None" = None) -> dict:
    """``label`` if it is a JSON object of at most ``max_label_bytes``, else RoomRefused(BAD_LABEL)."""
    if not isinstance(label, dict):
        raise RoomRefused(ErrorCode.BAD_LABEL, "label must be a JSON object", rid)
    try:
        size = label_size(label)
    except (TypeError, ValueError, RecursionError):
        raise RoomRefused(ErrorCode.BAD_LABEL, "label must be a JSON object", rid)
    if size > max_label_bytes:
        raise RoomRefused(ErrorCode.BAD_LABEL, "label is {} bytes; at most {}".format(
            size, max_label_bytes), rid)
    return label


def _reason(text) -> str:
    return str(text)[:MAX_REASON]


# -- requests (client to server) -----------------------------------------------------


@attrs.frozen
class CreateRoom:
    rid: int
    room_type: str
    label: dict
    max_members: "int | None"  # None: the server's --max-room-members
    listed: bool
    options: dict = attrs.field(factory=dict)  # for the handler's join_attempt


@attrs.frozen
class JoinRoom:
    rid: int
    room: bytes
    options: dict = attrs.field(factory=dict)


@attrs.frozen
class JoinOrCreateRoom:
    rid: int
    room_type: str
    label: dict
    max_members: "int | None"
    options: dict = attrs.field(factory=dict)


@attrs.frozen
class LeaveRoom:
    rid: int
    room: bytes


@attrs.frozen
class ListRooms:
    rid: int
    room_type: str


@attrs.frozen
class SendToRoom:
    room: bytes
    data: bytes
    to: tuple  # member ids, deduplicated, in order; () = all other members


def _rid(message: dict) -> int:
    return wire.int_field(message, "rid", 0, MAX_RID)


def _room_type(message: dict, rid) -> str:
    value = message.get("room_type")
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, "room_type must be a string")
    if not valid_room_type(value):
        raise RoomRefused(ErrorCode.BAD_ROOM_TYPE,
                          "room_type must be 1-32 characters of A-Z a-z 0-9 _ . -", rid)
    return value


def _room_id(message: dict, rid, refusal: ErrorCode) -> bytes:
    value = message.get("room")
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, "room must be a string")
    if not _ROOM_HEX.match(value):
        # Well-typed but no room can have it: the same answer as an unknown id.
        raise RoomRefused(refusal, _REFUSAL_TEXT[refusal], rid)
    return bytes.fromhex(value)


def _options(message: dict, rid, max_label_bytes) -> dict:
    options = message.get("options")
    if options is None:
        return {}
    if not isinstance(options, dict) or label_size(options) > max_label_bytes:
        raise RoomRefused(ErrorCode.BAD_LABEL,
                          "options must be a JSON object of at most {} bytes".format(max_label_bytes),
                          rid)
    return options


def _creation(message: dict, rid, max_label_bytes):
    label = message.get("label", {})
    if label is None:
        label = {}
    max_members = message.get("max_members")
    if max_members is not None and (type(max_members) is not int
                                    or not 1 <= max_members <= MAX_MEMBER_ID):
        raise ProtocolError(ErrorCode.BAD_FIELD, "max_members must be an integer of at least 1")
    room_type = _room_type(message, rid)
    return room_type, check_label(label, max_label_bytes, rid), max_members


def _targets(value) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TARGETS or any(
            type(m) is not int or not 0 <= m <= MAX_MEMBER_ID for m in value):
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            "to must be a list of at most {} member ids".format(MAX_TARGETS))
    return tuple(dict.fromkeys(value))


def parse_request(message: dict, max_label_bytes: int = DEFAULT_MAX_LABEL_BYTES):
    """The typed request of a ``room_*`` message from a client.

    Raises ``ProtocolError`` (malformed: close the connection) or
    ``RoomRefused`` (answer ``room_error``, keep the connection).
    """
    kind = message.get("type")
    if kind == "room_send":
        room = _room_id(message, None, ErrorCode.NOT_IN_ROOM)
        data = wire.bytes_field(message, "data", max_size=MAX_ROOM_MESSAGE)
        return SendToRoom(room, data, _targets(message.get("to")))
    rid = _rid(message)
    if kind == "room_create":
        listed = message.get("listed", True)
        if not isinstance(listed, bool):
            raise ProtocolError(ErrorCode.BAD_FIELD, "listed must be true or false")
        room_type, label, max_members = _creation(message, rid, max_label_bytes)
        return CreateRoom(rid, room_type, label, max_members, listed,
                          _options(message, rid, max_label_bytes))
    if kind == "room_join":
        room = _room_id(message, rid, ErrorCode.ROOM_NOT_FOUND)
        return JoinRoom(rid, room, _options(message, rid, max_label_bytes))
    if kind == "room_join_or_create":
        room_type, label, max_members = _creation(message, rid, max_label_bytes)
        return JoinOrCreateRoom(rid, room_type, label, max_members,
                                _options(message, rid, max_label_bytes))
    if kind == "room_leave":
        return LeaveRoom(rid, _room_id(message, rid, ErrorCode.NOT_IN_ROOM))
    if kind == "room_list":
        return ListRooms(rid, _room_type(message, rid))
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type {!r}".format(str(kind)[:40]))


def _creation_fields(message, label, max_members, options=None):
    if options:
        message["options"] = options
    if label is not None:
        message["label"] = label
    if max_members is not None:
        message["max_members"] = max_members
    return message


def create(rid: int, room_type: str, label: "dict | None" = None,
           max_members: "int | None" = None, listed: bool = True,
           options: "dict | None" = None) -> dict:
    """A ``room_create`` request: a new room of ``room_type``; ``listed=False`` is private.

    ``options`` (a JSON object) goes to the room handler's ``join_attempt``.
    """
    message = {"type": "room_create", "rid": rid, "room_type": room_type}
    if not listed:
        message["listed"] = False
    return _creation_fields(message, label, max_members, options)


def join(rid: int, room, options: "dict | None" = None) -> dict:
    """A ``room_join`` request for the room with id ``room`` (bytes or hex)."""
    message = {"type": "room_join", "rid": rid, "room": room_hex(room_bytes(room))}
    return _creation_fields(message, None, None, options)


def join_or_create(rid: int, room_type: str, label: "dict | None" = None,
                   max_members: "int | None" = None, options: "dict | None" = None) -> dict:
    """A ``room_join_or_create`` request: the fullest open listed room of the type, else a new one.

    ``label`` and ``max_members`` are used only if it creates.
    """
    message = {"type": "room_join_or_create", "rid": rid, "room_type": room_type}
    return _creation_fields(message, label, max_members, options)


def leave(rid: int, room) -> dict:
    """A ``room_leave`` request."""
    return {"type": "room_leave", "rid": rid, "room": room_hex(room_bytes(room))}


def list_rooms(rid: int, room_type: str) -> dict:
    """A ``room_list`` request: the listed open rooms of ``room_type``."""
    return {"type": "room_list", "rid": rid, "room_type": room_type}


def send(room, data: bytes, to=None) -> dict:
    """A ``room_send`` message (TCP relay) to ``to`` (member ids) or all other members.

    Raises ValueError for data over MAX_ROOM_MESSAGE bytes, more than
    MAX_TARGETS targets, or a frame that would not fit (the server would end
    the session for it).
    """
    data = bytes(data)
    if len(data) > MAX_ROOM_MESSAGE:
        raise ValueError("room message over {} bytes".format(MAX_ROOM_MESSAGE))
    message = {"type": "room_send", "room": room_hex(room_bytes(room)), "data": wire.b64(data)}
    if to:
        to = list(dict.fromkeys(to))
        if len(to) > MAX_TARGETS or any(type(m) is not int or not 0 <= m <= MAX_MEMBER_ID
                                        for m in to):
            raise ValueError("to: at most {} member ids (0 to 2**32-1)".format(MAX_TARGETS))
        message["to"] = to
    if len(wire.encode(message)) > MAX_INNER_FRAME:
        raise ValueError("room message and targets do not fit one frame")
    return message


# -- events (server to client) ------------------------------------------------------


@attrs.frozen
class MemberInfo:
    """A room member as others see it: its member id and user name."""

    member: int
    user: str


@attrs.frozen
class RoomInfo:
    """One room of a ``room_rooms`` answer."""

    room: bytes
    room_type: str
    label: dict
    members: int
    max_members: int


@attrs.frozen
class RoomJoined:
    """You joined a room (create, join or join_or_create succeeded).

    ``members`` includes you; when ``more`` is true the rest of the list
    follows in ``RoomMembers`` events before any other event of the room.
    """

    rid: int
    room: bytes
    room_type: str
    member: int
    label: dict
    max_members: int
    listed: bool
    created: bool
    members: tuple
    more: bool = False


@attrs.frozen
class RoomMembers:
    """The continuation of a member list too long for one ``room_joined`` frame."""

    room: bytes
    members: tuple
    more: bool = False


@attrs.frozen
class RoomLeft:
    """You are no longer in the room: ``reason`` is ``left``, ``kicked``, ``closed``, ..."""

    room: bytes
    reason: str
    rid: "int | None" = None


@attrs.frozen
class RoomPresence:
    """Another member joined (``event == "join"``) or left (``"leave"``, with ``reason``)."""

    room: bytes
    event: str
    member: int
    user: str
    reason: "str | None" = None


@attrs.frozen
class RoomMessage:
    """A room message (TCP) from member ``sender`` (0: the room's handler)."""

    room: bytes
    sender: int
    data: bytes


@attrs.frozen
class RoomDatagram:
    """A room datagram (UDP ROOM_RELAY) from member ``sender`` (0: the room's handler)."""

    room: bytes
    sender: int
    data: bytes


@attrs.frozen
class RoomLabel:
    """The room's handler changed its label."""

    room: bytes
    label: dict


@attrs.frozen
class RoomList:
    """The answer to ``room_list``; ``more``: some rooms did not fit the frame."""

    rid: int
    rooms: tuple
    more: bool = False


@attrs.frozen
class RoomError:
    """A refused room request (or room_send): ``code`` from wire.ErrorCode, ``rid`` if it answers one."""

    code: int
    reason: str
    rid: "int | None" = None


def _member_json(member) -> dict:
    return {"member": member.member, "user": member.user}


def _fit(base: dict, key: str, items: list) -> "tuple[list, list]":
    """(items that fit in ``base[key]`` within MAX_INNER_FRAME (with ``more``), the rest)."""
    probe = dict(base)
    probe[key] = []
    probe["more"] = True
    budget = MAX_INNER_FRAME - len(wire.encode(probe))
    taken = []
    for item in items:
        cost = len(wire.encode(item)) + (1 if taken else 0)
        if cost > budget:
            break
        budget -= cost
        taken.append(item)
    return taken, items[len(taken):]


def joined(rid: int, room: bytes, room_type: str, member: int, label: dict, max_members: int,
           listed: bool, created: bool, members) -> "list[dict]":
    """The frames that tell a client it joined: ``room_joined``, then ``room_members`` if needed.

    ``members`` are MemberInfo-like objects (``.member``, ``.user``).
    """
    base = {"type": "room_joined", "rid": rid, "room": room_hex(room), "room_type": room_type,
            "member": member, "label": label, "max_members": max_members, "listed": listed,
            "created": created}
    rest = [_member_json(m) for m in members]
    frames = []
    while True:
        taken, rest = _fit(base, "members", rest)
        message = dict(base, members=taken)
        if rest:
            message["more"] = True
        frames.append(message)
        if not rest:
            return frames
        base = {"type": "room_members", "room": room_hex(room)}


def left(room: bytes, reason: str, rid: "int | None" = None) -> dict:
    message = {"type": "room_left", "room": room_hex(room), "reason": _reason(reason)}
    if rid is not None:
        message["rid"] = rid
    return message


def presence(room: bytes, event: str, member: int, user: str, reason: "str | None" = None) -> dict:
    message = {"type": "room_presence", "room": room_hex(room), "event": event,
               "member": member, "user": user}
    if reason is not None:
        message["reason"] = _reason(reason)
    return message


def message(room: bytes, sender: int, data: bytes) -> dict:
    return {"type": "room_message", "room": room_hex(room), "from": sender, "data": wire.b64(data)}


def label_changed(room: bytes, label: dict) -> dict:
    return {"type": "room_label", "room": room_hex(room), "label": label}


def rooms(rid: int, infos, more: bool = False) -> dict:
    """A ``room_rooms`` answer holding as many of ``infos`` (RoomInfo) as fit one frame.

    ``more``: the caller left some rooms out already.
    """
    entries = [{"room": room_hex(i.room), "room_type": i.room_type, "label": i.label,
                "members": i.members, "max_members": i.max_members} for i in infos]
    base = {"type": "room_rooms", "rid": rid}
    taken, rest = _fit(base, "rooms", entries)
    answer = dict(base, rooms=taken)
    if rest or more:
        answer["more"] = True
    return answer


def error(code: ErrorCode, reason: str, rid: "int | None" = None) -> dict:
    message = {"type": "room_error", "code": int(code), "reason": _reason(reason)}
    if rid is not None:
        message["rid"] = rid
    return message


_REFUSAL_TEXT = {
    ErrorCode.ROOM_NOT_FOUND: "no such room",
    ErrorCode.ROOM_FULL: "room full",
    ErrorCode.ROOM_REFUSED: "refused by the room",
    ErrorCode.TOO_MANY_ROOMS: "in too many rooms already",
    ErrorCode.ROOMS_EXHAUSTED: "the server holds as many rooms as it may",
    ErrorCode.BAD_LABEL: "bad label",
    ErrorCode.NOT_IN_ROOM: "not in that room",
    ErrorCode.ALREADY_IN_ROOM: "already in that room",
    ErrorCode.BAD_ROOM_TYPE: "bad room type",
    ErrorCode.RELAY_LIMITED: "over the relay rate; not relayed",
}


def refusal(code: ErrorCode, rid: "int | None" = None, reason: "str | None" = None) -> RoomRefused:
    """A RoomRefused with the standard text for ``code`` unless ``reason`` is given."""
    return RoomRefused(code, reason if reason is not None else _REFUSAL_TEXT[code], rid)


def _event_room(message: dict) -> bytes:
    value = message.get("room")
    if not isinstance(value, str) or not _ROOM_HEX.match(value):
        raise ProtocolError(ErrorCode.BAD_FIELD, "room must be 16 lowercase hex characters")
    return bytes.fromhex(value)


def _member_id(message: dict, name: str = "member") -> int:
    return wire.int_field(message, name, 0, MAX_MEMBER_ID)


def _object(message: dict, name: str) -> dict:
    value = message.get(name)
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be an object".format(name))
    return value


def _bool(message: dict, name: str, default=None) -> bool:
    value = message.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be true or false".format(name))
    return value


def _text(message: dict, name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be a string".format(name))
    return value


def _members(message: dict) -> tuple:
    value = message.get("members")
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise ProtocolError(ErrorCode.BAD_FIELD, "members must be a list of objects")
    return tuple(MemberInfo(_member_id(m), _text(m, "user")) for m in value)


def _optional_rid(message: dict) -> "int | None":
    return None if message.get("rid") is None else _rid(message)


def parse_event(message: dict):
    """The typed event of a ``room_*`` message from the server (types in EVENT_TYPES).

    Raises ``ProtocolError`` if the message is malformed.
    """
    kind = message.get("type")
    if kind == "room_message":
        return RoomMessage(_event_room(message), _member_id(message, "from"),
                           wire.bytes_field(message, "data", max_size=MAX_ROOM_MESSAGE))
    if kind == "room_presence":
        event = _text(message, "event")
        if event not in PRESENCE_EVENTS:
            raise ProtocolError(ErrorCode.BAD_FIELD, "event must be join, leave, reconnecting or back")
        reason = message.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ProtocolError(ErrorCode.BAD_FIELD, "reason must be a string")
        return RoomPresence(_event_room(message), event, _member_id(message),
                            _text(message, "user"), reason)
    if kind == "room_joined":
        return RoomJoined(
            rid=_rid(message), room=_event_room(message), room_type=_text(message, "room_type"),
            member=_member_id(message), label=_object(message, "label"),
            max_members=_member_id(message, "max_members"), listed=_bool(message, "listed"),
            created=_bool(message, "created"), members=_members(message),
            more=_bool(message, "more", False))
    if kind == "room_members":
        return RoomMembers(_event_room(message), _members(message), _bool(message, "more", False))
    if kind == "room_left":
        return RoomLeft(_event_room(message), _text(message, "reason"), _optional_rid(message))
    if kind == "room_label":
        return RoomLabel(_event_room(message), _object(message, "label"))
    if kind == "room_rooms":
        value = message.get("rooms")
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise ProtocolError(ErrorCode.BAD_FIELD, "rooms must be a list of objects")
        infos = tuple(RoomInfo(_event_room(r), _text(r, "room_type"), _object(r, "label"),
                               _member_id(r, "members"), _member_id(r, "max_members"))
                      for r in value)
        return RoomList(_rid(message), infos, _bool(message, "more", False))
    if kind == "room_redirect":
        return transfer.parse_redirect(message)
    if kind == "room_error":
        return RoomError(wire.int_field(message, "code", 0, 999), _text(message, "reason"),
                         _optional_rid(message))
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type {!r}".format(str(kind)[:40]))


# -- datagrams -------------------------------------------------------------------------


def pack_room_send(room, data: bytes, to=()) -> bytes:
    """The payload of a ROOM_SEND datagram: room (8) | n (1) | n x member (u32 LE) | data.

    ``to`` empty means all other members.  Raises ValueError for more than
    MAX_TARGETS targets or data over MAX_ROOM_DATAGRAM bytes.
    """
    room = room_bytes(room)
    to = tuple(dict.fromkeys(to or ()))
    if len(to) > MAX_TARGETS:
        raise ValueError("at most {} targets".format(MAX_TARGETS))
    if len(data) > MAX_ROOM_DATAGRAM:
        raise ValueError("room datagram over {} bytes".format(MAX_ROOM_DATAGRAM))
    payload = room + bytes((len(to),)) + b"".join(_u32.pack(m) for m in to) + bytes(data)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("room datagram and targets over {} bytes".format(MAX_PAYLOAD))
    return payload


def unpack_room_send(payload: bytes) -> "tuple[bytes, tuple, bytes]":
    """(room, targets, data) of a ROOM_SEND payload, else Drop('bad_room_datagram')."""
    if len(payload) < ROOM_ID_SIZE + 1:
        raise Drop("bad_room_datagram")
    count = payload[ROOM_ID_SIZE]
    start = ROOM_ID_SIZE + 1
    end = start + 4 * count
    if len(payload) < end or len(payload) - end > MAX_ROOM_DATAGRAM:
        raise Drop("bad_room_datagram")
    to = tuple(dict.fromkeys(struct.unpack_from("<{}I".format(count), payload, start))) if count else ()
    return payload[:ROOM_ID_SIZE], to, payload[end:]


def pack_room_relay(room: bytes, sender: int, data: bytes) -> bytes:
    """The payload of a ROOM_RELAY datagram: room (8) | from (u32 LE) | data."""
    if len(data) > MAX_ROOM_DATAGRAM:
        raise ValueError("room datagram over {} bytes".format(MAX_ROOM_DATAGRAM))
    return room + _u32.pack(sender) + data


def unpack_room_relay(payload: bytes) -> RoomDatagram:
    """The RoomDatagram of a ROOM_RELAY payload, else Drop('bad_room_datagram')."""
    if len(payload) < ROOM_ID_SIZE + 4:
        raise Drop("bad_room_datagram")
    return RoomDatagram(payload[:ROOM_ID_SIZE], _u32.unpack_from(payload, ROOM_ID_SIZE)[0],
                        payload[ROOM_ID_SIZE + 4:])

