"""TCP messages: JSON objects in frames, the sealed envelope, error codes.

Sans-I/O.  A frame is one UTF-8 JSON object with a string ``type``.  Before
the handshake completes frames travel in clear (``hello``, ``challenge``,
``error``); after it every frame is ``{"type": "sealed", "box": B64}`` whose
box opens to the inner message.  See docs/protocol.md, "TCP messages".
"""

import base64
import binascii
import enum
import json
import struct

MAX_FRAME = 8192
MAX_USER = 64
MAX_PASSWORD = 256
MAX_DATA = 4096
PROTOCOL_VERSION = 1


def encode_frame(frame: bytes, framing: str = "int16") -> bytes:
    """A frame as it goes on the wire, for code that frames without Twisted.

    ``framing.py`` holds the Twisted protocols for the same two framings.
    """
    if framing == "int16":
        return struct.pack("!H", len(frame)) + frame
    return frame + b"\n"


def split_frames(data: bytes, framing: str = "int16"):
    """(complete frames, rest) of received bytes, for code that frames without Twisted.

    Sizes are not checked here; callers bound what they buffer.
    """
    frames = []
    if framing == "int16":
        while len(data) >= 2:
            (size,) = struct.unpack_from("!H", data)
            if len(data) < 2 + size:
                break
            frames.append(data[2:2 + size])
            data = data[2 + size:]
        return frames, data
    *lines, rest = data.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines], rest


class ErrorCode(enum.IntEnum):
    """Error codes sent in ``error`` messages; HTTP-like so they read easily."""

    BAD_FRAME = 400  # not UTF-8, not JSON, not an object, no string type
    AUTH_FAILED = 401
    UNEXPECTED = 403  # a valid message in the wrong state
    UNKNOWN_TYPE = 404
    LOGIN_TIMEOUT = 408
    ALREADY_LOGGED_IN = 409  # --duplicate-login reject
    RESUME_REFUSED = 410  # unknown, expired, used or ended resume ticket (member ``refused``)
    FRAME_TOO_LONG = 413
    BAD_FIELD = 422  # missing field or wrong type or size
    BAD_VERSION = 426
    BAD_TICKET = 419  # a ticket_login whose ticket is unknown, used, expired or for another node
    TOO_MANY_ATTEMPTS = 429  # failed logins from this address: wait (reason says how long)
    # Room refusals (room_error; the connection stays open): protocol/rooms.py.
    ROOM_NOT_FOUND = 460  # no such room, or it is closing
    ROOM_FULL = 461
    ROOM_REFUSED = 462  # the room's handler refused the join; reason is its text
    TOO_MANY_ROOMS = 463  # --max-rooms-per-session
    ROOMS_EXHAUSTED = 464  # --max-rooms
    BAD_LABEL = 465  # not an object, or over --max-label-bytes
    NOT_IN_ROOM = 466
    ALREADY_IN_ROOM = 467
    BAD_ROOM_TYPE = 468
    RELAY_LIMITED = 469  # a room_send over --max-relay-rate was not relayed
    BAD_BOX = 495  # a sealed frame that did not open
    INTERNAL = 500
    SERVER_FULL = 503


class ProtocolError(Exception):
    """Bad input from the peer: answered with an error message and a close."""

    def __init__(self, code: ErrorCode, reason: str):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def encode(message: dict) -> bytes:
    """Canonical bytes of a message: compact, sorted keys, ASCII only."""
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode("ascii")


def decode(frame: bytes) -> dict:
    """The message in a frame, or ProtocolError(BAD_FRAME)."""
    if len(frame) > MAX_FRAME:
        raise ProtocolError(ErrorCode.FRAME_TOO_LONG, "frame longer than {} bytes".format(MAX_FRAME))
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not UTF-8")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not JSON")
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not an object with a string type")
    return message


def error(code: ErrorCode, reason: str) -> dict:
    return {"type": "error", "code": int(code), "reason": reason}


def text_field(message: dict, name: str, max_length: int, allow_empty: bool = False) -> str:
    """A string field of at most ``max_length`` characters that is valid Unicode.

    JSON can carry lone surrogates (``"\\ud800"``), which no UTF-8 encoder
    accepts: they are refused here (BAD_FIELD) rather than deep in a checker.
    """
    value = message.get(name)
    if not isinstance(value, str) or len(value) > max_length or (not value and not allow_empty):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            "{} must be a {}string of at most {} characters".format(
                name, "" if allow_empty else "non-empty ", max_length),
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.BAD_FIELD, "{} is not valid Unicode text".format(name))
    return value


def loggable(text: str) -> str:
    """``text`` safe for a one-line log: control and other unprintable characters escaped.

    ESC, CR, LF (and every other character ``str.isprintable`` refuses)
    become ``\\xNN`` / ``\\uNNNN``, so a user name cannot forge log lines or
    terminal escapes.  Plain names come back unchanged.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def version_field(message: dict) -> int:
    """The hello's ``version``: the integer 1 (not ``1.0``, not ``true``), else BAD_VERSION."""
    value = message.get("version")
    if type(value) is not int or value != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, "this server speaks protocol version {}"
                            .format(PROTOCOL_VERSION))
    return value


def bytes_field(message: dict, name: str, size: "int | None" = None, max_size: int = MAX_FRAME) -> bytes:
    """A base64 field, of exactly ``size`` bytes when given."""
    value = message.get(name)
    if not isinstance(value, str) or len(value) > (max_size * 4) // 3 + 4:
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be a base64 string".format(name))
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be a base64 string".format(name))
    if size is not None and len(raw) != size:
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be {} bytes".format(name, size))
    if len(raw) > max_size:
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be at most {} bytes".format(name, max_size))
    return raw


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def sealed(box: bytes) -> dict:
    return {"type": "sealed", "box": b64(box)}


def unseal_envelope(message: dict) -> bytes:
    """The box of a sealed envelope; any other message here is out of place."""
    if message["type"] != "sealed":
        raise ProtocolError(ErrorCode.UNEXPECTED, "expected a sealed frame, got {!r}".format(message["type"][:40]))
    return bytes_field(message, "box")


def int_field(message: dict, name: str, low: int, high: int) -> int:
    value = message.get(name)
    if type(value) is not int or not low <= value <= high:
        raise ProtocolError(ErrorCode.BAD_FIELD, "{} must be an integer from {} to {}".format(name, low, high))
    return value
