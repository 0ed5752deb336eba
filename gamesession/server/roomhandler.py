"""Server-side room handlers: the interface an authoritative room implements, and plain relay.

Bind a room type to a handler with ``--room TYPE=package.module.Name``
(repeatable); ``Name`` is a class (or any callable) that the server calls
with no arguments once per room of that type, so each room has its own
handler instance and may keep its game state on it.  Types without
``--room`` get ``RelayRoom``, which relays what members send to the members
they address.  ``--room-tick TYPE=HZ`` calls ``tick(room, dt)`` HZ times a
second (at most 60) on the server's clock; the datagrams a tick sends (one
snapshot per member, say) leave together when it returns, in one
``sendmmsg`` on the batched game port.

A handler method that raises is logged once per room and method with its
traceback and counted (``gamesession_room_handler_errors_total``); in
``join_attempt`` the join is refused (462, "room handler failed"); anywhere
else the room goes on.  A handler never takes the server down.

Handlers run on the reactor thread: return quickly, never block.
"""

from zope.interface import Attribute, Interface, implementer


class IRoom(Interface):
    """What a handler sees of its room (``gamesession.server.rooms.Room``)."""

    id = Attribute("The room id: 8 bytes (``id.hex()`` is how clients see it).")
    room_type = Attribute("The room's type name.")
    label = Attribute("The room's label: a JSON object (read it; change it with set_label).")
    listed = Attribute("True if room_list shows the room.")
    max_members = Attribute("Seats in the room.")
    members = Attribute("member id -> Member(member_id, user, session), in join order.")
    server = Attribute("The game's view of the server: ``sessions`` (find, all) and ``rooms``.")
    closing = Attribute("True once the room is closing or closed: it takes no joins.")

    def send_message(payload, to=None):
        """Send bytes over TCP (reliable) as the room (``from`` 0) to ``to`` (member ids) or all."""

    def send_datagram(payload, to=None):
        """Send bytes over UDP (sealed per receiver) as the room (``from`` 0) to ``to`` or all."""

    def send_datagrams(payloads):
        """Send each member its own bytes over UDP as the room: ``payloads`` maps member id -> bytes."""

    def relay_message(member, payload, to=()):
        """Relay ``payload`` over TCP from ``member`` (stamped with its id) to ``to`` or all others."""

    def relay_datagram(member, payload, to=()):
        """Relay ``payload`` over UDP from ``member`` to ``to`` or all others (relay budget applies)."""

    def kick(member_id, reason="kicked"):
        """Remove a member: it gets room_left with ``reason``; the others a leave presence event."""

    def set_label(label):
        """Replace the label (a JSON object within --max-label-bytes; ValueError otherwise) and tell the members."""

    def close(reason="closed"):
        """Close the room: every member gets room_left ``closed``; then ``room_closed`` is called."""


class IRoomHandler(Interface):
    """The server-side logic of a room type; every method is optional via ``RelayRoom``.

    ``member`` arguments are ``Member`` objects (``member_id``, ``user``,
    ``session``); ``to`` is a tuple of member ids a sender addressed (empty:
    all other members; member id 0 addresses the handler itself).
    """

    def room_created(room):
        """The room exists; its first member has not joined yet."""

    def join_attempt(room, session, options):
        """May ``session`` join?  Return None to accept or a text (the refusal reason, 462).

        ``options`` is the JSON object the client sent with the request
        (``options`` member, {} if none).  Called for the creator too.
        """

    def joined(room, member):
        """``member`` joined (the others were told)."""

    def left(room, member, reason):
        """``member`` left: left, logout, timeout, kicked, disconnected, replaced, shutdown."""

    def member_suspended(room, member):
        """``member``'s connection dropped; it keeps its seat for the resume grace (optional)."""

    def member_resumed(room, member):
        """``member`` resumed after ``member_suspended`` (optional)."""

    def message_received(room, member, payload, to):
        """A room message (TCP room_send) from ``member``."""

    def datagram_received(room, member, payload, to):
        """A room datagram (UDP ROOM_SEND) from ``member``."""

    def tick(room, dt):
        """The room's tick (``--room-tick``); ``dt`` is the seconds since the last one."""

    def room_closed(room, reason):
        """The room closed: ``empty`` (last member left, linger over), ``shutdown``, ``refused`` (its creator was refused), or the reason given to ``close``."""


#: Handler methods a handler may lack (session resume came after the others).
OPTIONAL_METHODS = frozenset(["member_suspended", "member_resumed"])


@implementer(IRoomHandler)
class RelayRoom:
    """Plain relay, and the base class for handlers: override what the game needs.

    Messages and datagrams go to the members the sender addressed (all others
    by default), stamped with the sender's member id; every join is accepted.
    """

    def room_created(self, room):
        pass

    def join_attempt(self, room, session, options):
        return None

    def joined(self, room, member):
        pass

    def left(self, room, member, reason):
        pass

    def member_suspended(self, room, member):
        pass

    def member_resumed(self, room, member):
        pass

    def message_received(self, room, member, payload, to):
        room.relay_message(member, payload, to)

    def datagram_received(self, room, member, payload, to):
        room.relay_datagram(member, payload, to)

    def tick(self, room, dt):
        pass

    def room_closed(self, room, reason):
        pass


def load_handler(dotted: str):
    """Resolve ``--room TYPE=dotted``: a callable that makes one handler per room.

    Raises (for a usage error) if the name does not resolve, is not callable,
    or what it names lacks a method of IRoomHandler.
    """
    from twisted.python.reflect import namedAny

    factory = namedAny(dotted)
    if not callable(factory):
        raise TypeError("{} is not a class or callable".format(dotted))
    if isinstance(factory, type):
        missing = [name for name in IRoomHandler.names()
                   if name not in OPTIONAL_METHODS and not callable(getattr(factory, name, None))]
        if missing:
            raise TypeError("{} lacks {} (subclass RelayRoom)".format(dotted, ", ".join(missing)))
    return factory
