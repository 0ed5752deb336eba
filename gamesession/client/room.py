"""A room as a ``GameClient`` sees it: its members, sends and events.

    room = await client.join_or_create("deathmatch", max_members=4)
    room.on_presence = lambda e: print(e.user, e.event)    # RoomPresence
    room.on_message = lambda e: print(room.user(e.sender), e.data)  # RoomMessage (TCP)
    room.on_datagram = lambda e: ...                       # RoomDatagram (UDP)
    room.send_datagram(b"pos 3 4")                         # to all other members
    room.send_message(b"gg", to=[2])                       # to member 2 only
    await room.leave()

Events that arrive before a handler is set wait for it (``events.EventSlot``):
a presence event that follows the join at once is delivered when
``on_presence`` is set, not lost.
"""

from twisted.internet import defer

from gamesession.client.events import EventSlot
from gamesession.protocol.clientcore import (
    RoomDatagram, RoomError, RoomJoined, RoomLabel, RoomLeft, RoomList, RoomMessage, RoomPresence)
from gamesession.protocol.rooms import HANDLER, RoomRefused
from gamesession.protocol.transfer import RoomRedirect


class RoomClosed(Exception):
    """An operation on a room this session is no longer in: ``reason`` says why it left."""

    def __init__(self, room: str, reason: str):
        super().__init__(room, reason)
        self.room = room
        self.reason = reason

    def __str__(self):
        return "not in room {} any more ({})".format(self.room, self.reason)


class Room:
    """A room this client is in.  Made by GameClient.create_room, join_room
    and join_or_create; never directly.

    ``id`` (16 hex digits: what others pass to ``join_room``), ``room_type``,
    ``member`` (this session's member id), ``created``, ``label``,
    ``max_members``, ``listed``, ``members`` (member id -> user name, live,
    this session included) and ``left`` (None, or why this session left).
    """

    on_presence = EventSlot(
        "callable(RoomPresence): another member joined (event 'join') or left ('leave', reason)")
    on_message = EventSlot(
        "callable(RoomMessage): a room message (TCP) from a member (sender 0: the room's handler)")
    on_datagram = EventSlot(
        "callable(RoomDatagram): a room datagram (UDP) from a member (sender 0: the room's handler)")
    on_label = EventSlot("callable(RoomLabel): the room's handler changed its label")
    on_left = EventSlot(
        "callable(RoomLeft): this session left the room: reason left, kicked, closed, "
        "or how the session ended")

    def __init__(self, client, joined: RoomJoined):
        self._client = client
        self._state = client.core.rooms[joined.room]
        self.id = joined.room.hex()
        #: The id as 8 bytes, as the events (``event.room``) carry it.
        self.room_id = joined.room
        self.room_type = joined.room_type
        self.member = joined.member
        self.created = joined.created
        self.max_members = joined.max_members
        self.listed = joined.listed
        self.left = None
        self._left_waiters = []
        self._leaving = False

    def __repr__(self):
        return "<Room {} {} as member {} of {}>".format(
            self.room_type, self.id, self.member, len(self.members))

    @property
    def members(self) -> dict:
        """Member id -> user name of everyone in the room now (this session included)."""
        return dict(self._state.members)

    @property
    def label(self) -> dict:
        """The room's label (a small JSON object), as the handler last set it."""
        return self._state.label

    def user(self, member: int) -> str:
        """The user name of member id ``member``: '' for 0 (HANDLER, the room's
        server-side handler) and for a member no longer in the room."""
        return self._state.members.get(member, "") if member != HANDLER else ""

    def _check_open(self):
        if self.left is not None:
            raise RoomClosed(self.id, self.left)
        self._client._check_open()

    def send_message(self, data: bytes, to=None) -> None:
        """Send ``data`` (at most MAX_ROOM_MESSAGE = 4096 bytes) reliably over TCP
        to every other member, or to ``to`` (a member id or a list of them; 0
        is the room's server-side handler alone).

        Raises PayloadTooLarge over the limit (nothing is sent) and RoomClosed
        once this session left the room.
        """
        self._check_open()
        self._client._send_control(self._client.core.room_message(self.id, data, to))

    def send_datagram(self, data: bytes, to=None) -> None:
        """Send ``data`` unreliably over UDP to every other member, or to ``to``.

        Keep datagrams at or under about 1200 bytes.  Raises PayloadTooLarge
        and RoomClosed as send_message.
        """
        self._check_open()
        self._client._send_packet(self._client.core.room_datagram(self.id, data, to))

    def leave(self) -> defer.Deferred:
        """Leave the room; fires with the reason (``left``) once the server confirmed.

        Leaving a room already left fires at once with why it was left.
        """
        if self.left is not None:
            return defer.succeed(self.left)
        d = self.wait_left()
        if not self._leaving:
            self._leaving = True
            self._client._request(self._client.core.leave_room(self.id)).addErrback(
                self._leave_failed)
        return d

    def wait_left(self) -> defer.Deferred:
        """Fires with the reason when this session leaves the room, however it happens."""
        if self.left is not None:
            return defer.succeed(self.left)
        d = defer.Deferred()
        self._left_waiters.append(d)
        return d

    def _leave_failed(self, failure):
        # The session ended first, or the server had already removed us (a
        # room_left, which TCP delivered before the refusal): _gone ran then.
        return None

    def _gone(self, event: RoomLeft) -> None:
        if self.left is not None:
            return
        self.left = event.reason
        waiters, self._left_waiters = self._left_waiters, []
        for d in waiters:
            d.callback(event.reason)
        type(self).on_left.queue(self).emit(event)

    def _emit(self, slot: str, event) -> None:
        getattr(type(self), slot).queue(self).emit(event)


class RoomOperations:
    """The room half of GameClient (mixed into it): requests and their events."""

    on_room_error = EventSlot(
        "callable(RoomError): a room refusal that answers no request, such as a room\n"
        "message over the relay budget (469 RELAY_LIMITED) or to a room left meanwhile\n"
        "(466).  Refusals of create/join/leave/list raise RoomRefused instead.")

    def _init_rooms(self):
        #: Room id (16 hex digits) -> Room, for every room this client is in.
        self.rooms = {}
        self._requests = {}  # rid -> Deferred
        self._join_options = {}  # rid -> a join's options, for the node it may be redirected to

    # -- requests -------------------------------------------------------------------

    def _request(self, request) -> defer.Deferred:
        self._check_open()
        rid, frame = request
        d = defer.Deferred(lambda _: self._requests.pop(rid, None))
        self._requests[rid] = d
        self._send_control(frame)
        return d

    async def create_room(self, room_type: str, label: "dict | None" = None,
                          max_members: "int | None" = None, listed: bool = True,
                          options: "dict | None" = None) -> Room:
        """Create a room of ``room_type`` (1-32 characters of ``A-Za-z0-9_.-``) and join it.

        ``label``: a small JSON object shown in room lists; ``max_members``:
        its seats (default: the server's ``--max-room-members``);
        ``listed=False``: a private room, joinable only by its id;
        ``options``: a small JSON object for the room handler's ``join_attempt``.
        Returns the Room; raises RoomRefused (463 too many rooms, 464 the
        server is full, 465 bad label, 462 refused by the room's handler).
        """
        return await self._request(
            self.core.create_room(room_type, label, max_members, listed, options))

    async def join_room(self, room_id: str, options: "dict | None" = None) -> Room:
        """Join the room with id ``room_id`` (16 hex digits, ``Room.id``);
        ``options`` go to the room handler's ``join_attempt``.

        Returns the Room; raises RoomRefused (460 no such room, 461 full,
        462 refused by its handler, 467 already in it, ...).
        """
        return await self._joining(self.core.join_room(room_id, options), options)

    async def join_or_create(self, room_type: str, label: "dict | None" = None,
                             max_members: "int | None" = None,
                             options: "dict | None" = None) -> Room:
        """Join the fullest open listed room of ``room_type`` with a free seat
        that accepts the join, else create one with ``label`` and ``max_members``.

        Returns the Room (``Room.created`` says which); raises RoomRefused.
        """
        return await self._joining(
            self.core.join_or_create(room_type, label, max_members, options), options)

    def _joining(self, request, options):
        if options:
            self._join_options[request[0]] = options
            rid = request[0]
            return self._request(request).addBoth(
                lambda result: (self._join_options.pop(rid, None), result)[1])
        return self._request(request)

    async def list_rooms(self, room_type: str) -> "list":
        """The listed open rooms of ``room_type``: a list of RoomInfo
        (``room``, ``room_type``, ``label``, ``members``, ``max_members``)."""
        return list(await self._request(self.core.list_rooms(room_type)))

    # -- events ---------------------------------------------------------------------

    def _room_event(self, event) -> bool:
        """Handle one room event from ClientCore; False for any other event."""
        kind = type(event)
        if kind is RoomJoined:
            room = Room(self, event)
            self.rooms[room.id] = room
            self._answer(event.rid, room)
        elif kind is RoomLeft:
            room = self.rooms.pop(event.room.hex(), None)
            if room is not None:
                room._gone(event)
            if event.rid is not None:
                self._answer(event.rid, event.reason)
        elif kind is RoomError:
            d = self._requests.pop(event.rid, None) if event.rid is not None else None
            if d is not None:
                d.errback(RoomRefused(event.code, event.reason, event.rid))
            else:
                type(self).on_room_error.queue(self).emit(event)
        elif kind is RoomList:
            self._answer(event.rid, event.rooms)
        elif kind is RoomRedirect:
            self._follow(event)  # client.move: the room is on another node
        elif kind in _ROOM_SLOTS:
            room = self.rooms.get(event.room.hex())
            if room is not None:
                room._emit(_ROOM_SLOTS[kind], event)
        else:
            return False
        return True

    def _answer(self, rid, result):
        d = self._requests.pop(rid, None)
        if d is not None:
            d.callback(result)

    def _room_datagram(self, payload: bytes) -> None:
        event = self.core.room_relay(payload)
        if event is not None:
            room = self.rooms.get(event.room.hex())
            if room is not None:
                room._emit("on_datagram", event)

    def _rooms_ended(self, reason: str) -> None:
        """The session ended: every room is left with its reason, every request fails."""
        from gamesession.client.gameclient import SessionClosed

        requests, self._requests = self._requests, {}
        for d in requests.values():
            d.errback(SessionClosed(reason))
        rooms, self.rooms = self.rooms, {}
        for room in rooms.values():
            self.core.rooms.pop(room.room_id, None)
            room._gone(RoomLeft(room=room.room_id, reason=reason))


_ROOM_SLOTS = {
    RoomPresence: "on_presence",
    RoomMessage: "on_message",
    RoomDatagram: "on_datagram",
    RoomLabel: "on_label",
}
