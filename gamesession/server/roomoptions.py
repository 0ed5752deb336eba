"""The room options of ``twistd gamesession`` and the RoomManager they make.

``tap.Options`` mixes in :class:`RoomOptionsMixin` (the repeatable ``--room``
and ``--room-tick``), includes :data:`OPT_PARAMETERS`, calls
:func:`check_options` from ``postOptions``; ``makeService`` calls
:func:`make_rooms`.  README.md, "Rooms" and "Limits".
"""

from twisted.python import usage

from gamesession.protocol import rooms as codec
from gamesession.server import rooms
from gamesession.server.application import attach_application
from gamesession.server.roomhandler import load_handler


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be positive")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must be 0 or more")
    return number


OPT_PARAMETERS = [
    ["max-rooms", None, rooms.DEFAULT_MAX_ROOMS,
     "Most rooms open at once; further creates get ROOMS_EXHAUSTED (464).", _positive_int],
    ["max-rooms-per-session", None, rooms.DEFAULT_MAX_ROOMS_PER_SESSION,
     "Most rooms one session may be in at once (then TOO_MANY_ROOMS, 463).", _positive_int],
    ["max-room-members", None, rooms.DEFAULT_MAX_ROOM_MEMBERS,
     "Most members of a room (and the default max_members of a new room).", _positive_int],
    ["max-label-bytes", None, codec.DEFAULT_MAX_LABEL_BYTES,
     "Largest room label (and join options), in bytes of its compact JSON "
     "(at most {}).".format(codec.MAX_LABEL_BYTES_LIMIT), _positive_int],
    ["room-linger", None, rooms.DEFAULT_ROOM_LINGER,
     "Seconds an empty room stays open for a member to come back (0: it closes at once).",
     _seconds],
    ["max-relay-rate", None, rooms.DEFAULT_RELAY_RATE,
     "Relayed copies per second one sender may cause (its fan-out budget; 0: no limit).",
     _seconds],
]


class RoomOptionsMixin:
    """``--room TYPE=NAME`` and ``--room-tick TYPE=HZ``, each repeatable."""

    def __init__(self):
        super().__init__()
        self["rooms"] = {}
        self["room-ticks"] = {}

    def opt_room(self, value):
        """TYPE=package.module.Name: the server-side handler of rooms of TYPE (repeatable;
        default: plain relay)."""
        room_type, dotted = _pair("--room", value)
        try:
            self["rooms"][room_type] = load_handler(dotted)
        except Exception as e:
            raise usage.UsageError("--room {}: {}".format(value, e))

    def opt_room_tick(self, value):
        """TYPE=HZ: call the handler's tick HZ times a second (at most 60) in rooms of TYPE
        (repeatable)."""
        room_type, rate = _pair("--room-tick", value)
        try:
            hz = float(rate)
        except ValueError:
            hz = 0.0
        if not 0 < hz <= rooms.MAX_TICK_RATE:
            raise usage.UsageError("--room-tick {}: HZ must be a number above 0 and at most {:g}"
                                   .format(value, rooms.MAX_TICK_RATE))
        self["room-ticks"][room_type] = hz


def _pair(option, value):
    room_type, sep, rest = value.partition("=")
    if not sep or not rest or not codec.valid_room_type(room_type):
        raise usage.UsageError("{} {}: expected TYPE=VALUE with TYPE 1-32 characters of "
                               "A-Z a-z 0-9 _ . -".format(option, value))
    return room_type, rest


def check_options(config) -> None:
    if config["max-label-bytes"] > codec.MAX_LABEL_BYTES_LIMIT:
        raise usage.UsageError("--max-label-bytes may be at most {} (a room's first frame "
                               "must fit)".format(codec.MAX_LABEL_BYTES_LIMIT))


def make_rooms(config, registry) -> rooms.RoomManager:
    """The configured RoomManager, installed as ``registry.rooms``; the game is attached to it."""
    registry.rooms = rooms.RoomManager(
        registry,
        handlers=config["rooms"],
        tick_rates=config["room-ticks"],
        max_rooms=config["max-rooms"],
        max_rooms_per_session=config["max-rooms-per-session"],
        max_room_members=config["max-room-members"],
        max_label_bytes=config["max-label-bytes"],
        linger=config["room-linger"],
        relay_rate=config["max-relay-rate"],
    )
    attach_application(config["application"], registry.rooms.server)
    return registry.rooms
