"""What the nodes of a cluster share: ``IDirectory`` and its records.

A directory knows which nodes are alive (each refreshes a heartbeat with a
time to live), which node holds each logged-in user, and which node hosts
each room with its type, label and seats.  It hands out seat reservations
as single-use, short-lived transfer tickets.  Every operation returns a
Deferred; an operation that cannot reach the directory fails with
``DirectoryUnavailable``.

Entries of a node that stopped refreshing its heartbeat count as gone at
once (a user held by a dead node may log in elsewhere; a dead node's rooms
are not listed) and are swept away by the next heartbeat of any node.

Two implementations share one test suite (tests/test_directory.py):
``memory.InMemoryDirectory`` and ``redisdir.RedisDirectory``.
"""

import re

import attrs
from zope.interface import Interface

DEFAULT_NODE_TTL = 5.0
DEFAULT_TICKET_TTL = 10.0
NODE_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")

DUPLICATE_POLICIES = ("kick", "reject")
# claim_user policies: the two --duplicate-login ones, and "move" (a transfer ticket redeemed).
CLAIM_POLICIES = DUPLICATE_POLICIES + ("move",)


class DirectoryUnavailable(Exception):
    """The directory cannot be reached (or did not answer in time)."""

    def __init__(self, reason="cluster directory unavailable"):
        super().__init__(reason)
        self.reason = reason


class SeatUnavailable(Exception):
    """``reserve_seat`` refused: ``reason`` is ``no_such_room``, ``room_full`` or ``node_gone``."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def check_node_name(name: str) -> str:
    """``name`` if it is a valid node name (1-64 of A-Z a-z 0-9 . _ : -), else ValueError."""
    if not isinstance(name, str) or not NODE_NAME.match(name):
        raise ValueError("a node name is 1-64 characters of A-Z a-z 0-9 . _ : - "
                         "(starting with a letter or digit): {!r}".format(name))
    return name


@attrs.frozen
class NodeRecord:
    """A live node: its name and where clients of other nodes are sent to reach it."""

    name: str = attrs.field(validator=lambda _i, _a, v: check_node_name(v))
    host: str = ""
    login_port: int = 0
    udp_port: int = 0

    def to_json(self) -> dict:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "NodeRecord":
        return cls(name=data["name"], host=data.get("host", ""),
                   login_port=int(data.get("login_port", 0)), udp_port=int(data.get("udp_port", 0)))


@attrs.frozen
class UserRecord:
    """Which node holds a user's session; ``claim`` tells one login from the next."""

    user: str
    node: str
    claim: str


@attrs.frozen
class ClaimResult:
    """What ``claim_user`` decided.

    ``granted``: the caller now holds the user.  ``previous``: the live
    holder before (with ``kick``, the one that was replaced and told so over
    the node's events; with ``reject``, the one that refused the claim), or
    None.
    """

    granted: bool
    previous: "UserRecord | None" = None


@attrs.frozen
class RoomRecord:
    """A room hosted on one node.

    ``occupied`` is kept by the hosting node (``update_room``); seats that are
    reserved for a ticket not yet redeemed count as taken too.  ``label`` is
    the room's label as compact JSON text; an unlisted room (``listed``
    false) is never in ``list_rooms`` but can be reserved by id.  ``meta``
    is free-form text for the game (at most 1024 characters).
    """

    room_id: str
    type: str
    node: str
    label: str = ""
    seats: int = 0
    occupied: int = 0
    meta: str = ""
    listed: bool = True

    def to_json(self) -> dict:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RoomRecord":
        return cls(room_id=data["room_id"], type=data["type"], node=data["node"],
                   label=data.get("label", ""), seats=int(data.get("seats", 0)),
                   occupied=int(data.get("occupied", 0)), meta=data.get("meta", ""),
                   listed=data.get("listed", True) not in (False, "0", 0))


ROOM_FIELDS = ("label", "seats", "occupied", "meta", "listed")


@attrs.frozen
class Ticket:
    """A single-use reservation of a seat in a room, for a user, on the hosting node."""

    ticket: str
    user: str
    room_id: str
    node: str
    expires_in: float

    def to_json(self) -> dict:
        return attrs.asdict(self)


class IDirectory(Interface):
    """The cluster's shared state.  Every method returns a Deferred."""

    def heartbeat(node, ttl):
        """Register or refresh the live ``NodeRecord`` for ``ttl`` seconds; sweep dead nodes.

        Fires True if the node was registered already, False if the directory
        did not know it (first start, or it lost the node: then ``restore``).
        """

    def deregister(name):
        """Remove node ``name`` with its users and rooms (clean shutdown)."""

    def live_nodes():
        """The live nodes: a list of ``NodeRecord`` sorted by name."""

    def claim_user(user, node, claim, policy):
        """Make ``node`` (with the opaque ``claim``) the holder of ``user``; fires a ClaimResult.

        ``policy`` ``kick``: always granted; a live holder on another node is
        told on its events (``{"type": "replaced", "user", "claim", "by"}``);
        a holder on the same node is replaced by that node itself.
        ``reject``: refused while any live node holds the user.  A holder
        whose node is dead does not count.  ``move`` (a transfer ticket was
        redeemed: the user's own session moves to ``node``): always granted,
        whatever the duplicate-login rule; the old holder is told as for
        ``kick`` with ``"reason": "moved"`` in the event.
        """

    def release_user(user, node, claim):
        """Forget ``user`` if ``node`` still holds it with ``claim``; fires True if it did."""

    def user_node(user):
        """The ``UserRecord`` of ``user`` if a live node holds it, else None."""

    def restore(node, users, rooms):
        """Re-register what ``node`` holds after the directory came back.

        ``users``: {user: claim}; ``rooms``: a list of RoomRecord.  Entries of
        ``node`` not among them are removed.  Fires the list of users that a
        live other node holds now (``node`` must end those sessions).
        """

    def register_room(room):
        """Add or replace a ``RoomRecord``."""

    def update_room(room_id, **fields):
        """Change ``label``, ``seats``, ``occupied``, ``meta`` or ``listed`` of a room; fires the new record or None."""

    def remove_room(room_id):
        """Remove a room (and its unredeemed reservations)."""

    def list_rooms(room_type):
        """The listed rooms of ``room_type`` on live nodes, a list of RoomRecord sorted by id."""

    def reserve_seat(room_id, user, ttl):
        """Reserve a seat for ``user``; fires a ``Ticket`` valid ``ttl`` seconds, or fails with SeatUnavailable.

        The hosting node is told on its events (``{"type": "reserved", "room_id",
        "ticket", "ttl_ms"}``), so that its own joins leave the seat free.
        """

    def redeem_ticket(ticket, node):
        """Use ``ticket`` on ``node``, once: fires its ``Ticket``, or None if unknown, used, expired or for another node."""

    def subscribe(node, on_event):
        """Call ``on_event(dict)`` for each event sent to ``node`` (replacements of its users)."""

    def close():
        """Stop: close connections, stop listening."""
