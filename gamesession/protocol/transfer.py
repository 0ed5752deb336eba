"""Moving a session to another node of a cluster: ``room_redirect`` and ``ticket_login``.

Sans-I/O, shared by both ends.  A ``room_join`` (or a ``room_join_or_create``
that chose a room) for a room hosted on another node is answered with a
sealed ``room_redirect``: that node's login address and UDP port and a
short-lived, single-use transfer ticket.  The client then makes a fresh
handshake with that node (the same pinned server key: every node of a
cluster holds one key) and sends, sealed, ``ticket_login`` instead of
``login``.  The node redeems the ticket once, logs the user in without a
password and places the session in the room; the session on the first node
ends with reason ``moved``.  See docs/protocol.md, "Moving between nodes".
"""

import re

import attrs

from gamesession.protocol import wire
from gamesession.protocol.wire import ErrorCode, ProtocolError

# A ticket is URL-safe base64 text (the server makes 16 random bytes: 22 characters).
MAX_TICKET = 64
_TICKET = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")
MAX_HOST = 253
MAX_RID = 2 ** 31 - 1
MAX_EXPIRES = 3600.0


def valid_ticket(ticket) -> bool:
    """Whether ``ticket`` has the form of a transfer ticket (16-64 of A-Z a-z 0-9 _ -)."""
    return isinstance(ticket, str) and bool(_TICKET.match(ticket))


@attrs.frozen
class TicketLogin:
    """A parsed ``ticket_login``: the ticket, and the request the move answers (its ``rid``
    and the join ``options`` for the room's handler)."""

    ticket: str
    rid: int = 0
    options: dict = attrs.field(factory=dict)


def ticket_login(ticket: str, rid: int = 0, options: "dict | None" = None) -> dict:
    """The sealed ``ticket_login`` a client sends instead of ``login`` after a redirect."""
    if not valid_ticket(ticket):
        raise ValueError("not a transfer ticket: {!r}".format(ticket)[:80])
    message = {"type": "ticket_login", "ticket": ticket, "rid": rid}
    if options:
        message["options"] = options
    return message


def parse_ticket_login(message: dict) -> TicketLogin:
    """The TicketLogin of a ``ticket_login`` message; ProtocolError(422) if malformed."""
    ticket = message.get("ticket")
    if not valid_ticket(ticket):
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            "ticket must be 16-64 characters of A-Z a-z 0-9 _ -")
    rid = wire.int_field(message, "rid", 0, MAX_RID) if "rid" in message else 0
    options = message.get("options", {})
    if not isinstance(options, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "options must be a JSON object")
    return TicketLogin(ticket, rid, options)


@attrs.frozen
class RoomRedirect:
    """The room of request ``rid`` is on another node: log in there with ``ticket``.

    ``host`` and ``port``: that node's login address; ``udp_port``: its UDP
    port; ``expires``: seconds the ticket stays valid from now.
    """

    rid: int
    room: bytes
    host: str
    port: int
    udp_port: int
    ticket: str
    expires: float


def redirect(rid: int, room: bytes, host: str, port: int, udp_port: int, ticket: str,
             expires: float) -> dict:
    """The ``room_redirect`` answer (S->C, sealed)."""
    return {"type": "room_redirect", "rid": rid, "room": bytes(room).hex(), "host": host,
            "port": port, "udp_port": udp_port, "ticket": ticket,
            "expires": round(float(expires), 3)}


def parse_redirect(message: dict) -> RoomRedirect:
    """The RoomRedirect of a ``room_redirect`` message; ProtocolError if malformed."""
    room = message.get("room")
    if not isinstance(room, str) or not re.match(r"\A[0-9a-f]{16}\Z", room):
        raise ProtocolError(ErrorCode.BAD_FIELD, "room must be 16 lowercase hex characters")
    ticket = message.get("ticket")
    if not valid_ticket(ticket):
        raise ProtocolError(ErrorCode.BAD_FIELD, "ticket must be 16-64 characters of A-Z a-z 0-9 _ -")
    expires = message.get("expires")
    if type(expires) not in (int, float) or not 0 <= expires <= MAX_EXPIRES:
        raise ProtocolError(ErrorCode.BAD_FIELD, "expires must be seconds from 0 to 3600")
    return RoomRedirect(
        rid=wire.int_field(message, "rid", 0, MAX_RID), room=bytes.fromhex(room),
        host=wire.text_field(message, "host", MAX_HOST), port=wire.int_field(message, "port", 1, 65535),
        udp_port=wire.int_field(message, "udp_port", 1, 65535), ticket=ticket,
        expires=float(expires))
