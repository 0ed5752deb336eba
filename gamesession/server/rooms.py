"""Rooms: members, presence, server-stamped relay, limits, linger and ticks.

``RoomManager`` holds every room of one server, indexed by id and by type,
and every session's memberships.  The TCP login service hands it the
``room_*`` requests of logged-in sessions (``request``), the registry hands
it ROOM_SEND datagrams (``datagram_received``) and every session end
(``session_ended``).  Wire formats: ``gamesession.protocol.rooms`` and
docs/protocol.md, "Rooms".  Server-side logic: ``roomhandler``.

Security by construction: a relayed message or datagram carries the member
id the manager holds for the (session, room) pair it arrived on; nothing the
sender writes is read as its identity.  Relayed datagrams are sealed for each
receiver with that receiver's own session key and counter, all copies in one
pass and one hand-over to the game port (``SessionRegistry.fan_out``).
Every table is bounded by an option: rooms in total, rooms per session,
members per room, label size; fan-out is bounded by the per-sender relay
budget (``--max-relay-rate``).  Time comes from the injected clock.
"""

import os

from twisted.internet import task
from twisted.logger import Logger
from zope.interface import implementer

from gamesession.protocol import rooms as codec
from gamesession.protocol import wire
from gamesession.protocol.datagram import Drop, Kind
from gamesession.protocol.rooms import RoomRefused, refusal
from gamesession.protocol.wire import ErrorCode
from gamesession.server.application import GameServer
from gamesession.server.limits import TokenBucket
from gamesession.server.roomhandler import IRoom, RelayRoom

DEFAULT_MAX_ROOMS = 10000
DEFAULT_MAX_ROOMS_PER_SESSION = 8
DEFAULT_MAX_ROOM_MEMBERS = 64
DEFAULT_ROOM_LINGER = 0.0
DEFAULT_RELAY_RATE = 2000.0
MAX_TICK_RATE = 60.0

_ROOM_RELAY = int(Kind.ROOM_RELAY)
_JOIN_REQUESTS = frozenset(["room_create", "room_join", "room_join_or_create"])
_FAILED = object()  # what a guarded handler call returns when the handler raised


class RelayBudget(TokenBucket):
    """The relay fan-out budget of one sender: one token per copy sent."""

    __slots__ = ()

    def spend(self, now: float, copies: int) -> bool:
        """Spend ``copies`` tokens at once, or none (False: over the budget)."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < copies:
            self.tokens = tokens
            return False
        self.tokens = tokens - copies
        return True


class FullestFirst:
    """Rooms by member count, so that a fullest-first scan costs what it returns.

    Within a count, rooms are in the order they reached it.  ``room_list``
    and ``room_join_or_create`` read these instead of sorting every room of
    a type per request (a client could otherwise make each request cost
    O(rooms)).
    """

    __slots__ = ("by_count",)

    def __init__(self):
        self.by_count = {}  # member count -> {room id: Room}, insertion ordered

    def add(self, room, count):
        self.by_count.setdefault(count, {})[room.id] = room

    def remove(self, room, count):
        bucket = self.by_count[count]
        del bucket[room.id]
        if not bucket:
            del self.by_count[count]

    def __len__(self):
        return sum(len(bucket) for bucket in self.by_count.values())

    def fullest(self):
        """Rooms, fullest first; safe to change the index while iterating (buckets are copied)."""
        for count in sorted(self.by_count, reverse=True):
            bucket = self.by_count.get(count)
            if bucket:
                yield from list(bucket.values())

    def first(self, limit):
        """At most ``limit`` rooms, fullest first (no change while iterating)."""
        taken = []
        for count in sorted(self.by_count, reverse=True):
            for room in self.by_count[count].values():
                if len(taken) == limit:
                    return taken
                taken.append(room)
        return taken


class Member:
    """One session's seat in one room, as handlers see it."""

    __slots__ = ("member_id", "user", "session", "room", "joined_at", "announced")

    def __init__(self, member_id, user, session, room, joined_at):
        self.member_id = member_id
        self.user = user
        self.session = session
        self.room = room
        self.joined_at = joined_at
        self.announced = False  # the handler's joined() was called

    def __repr__(self):
        return "<Member {} {} of room {}>".format(self.member_id, self.user, self.room.id.hex())

    def info(self) -> codec.MemberInfo:
        return codec.MemberInfo(self.member_id, self.user)


@implementer(IRoom)
class Room:
    """One room: its members in join order, its handler, its timers (provides IRoom)."""

    def __init__(self, manager, room_id, room_type, label, max_members, listed, handler, serial):
        self.manager = manager
        self.id = room_id
        self.room_type = room_type
        self.label = label
        self.max_members = max_members
        self.listed = listed
        self.handler = handler
        self.serial = serial  # creation order
        self.listed_at = None  # the member count it is filed under in its type's listing
        self.seats_at = None  # ... in its type's rooms with a free seat
        self.members = {}
        self.next_member = 1
        self.closing = False
        self.linger_call = None
        self.ticker = None
        self.last_tick = 0.0
        self.failed = set()  # handler methods that raised here (logged once each)

    def __repr__(self):
        return "<Room {} {} ({} members)>".format(self.room_type, self.id.hex(), len(self.members))

    @property
    def server(self) -> GameServer:
        return self.manager.server

    # -- for handlers ---------------------------------------------------------

    def send_message(self, payload: bytes, to=None) -> int:
        """Send bytes over TCP as the room (``from`` 0) to ``to`` or all members; how many got it."""
        return self.manager.deliver_message(self, None, payload, self._targets(None, to))

    def send_datagram(self, payload: bytes, to=None) -> int:
        """Send bytes over UDP as the room (``from`` 0) to ``to`` or all members; how many went out."""
        return self.manager.deliver_datagram(self, None, payload, self._targets(None, to))

    def send_datagrams(self, payloads) -> int:
        """Send each member its own bytes over UDP as the room (``from`` 0); how many went out.

        ``payloads`` maps member id -> bytes (or is an iterable of such
        pairs); ids not in the room are skipped.  For per-member snapshots:
        one call seals them all and hands them to the game port together.
        """
        return self.manager.deliver_datagrams(self, payloads)

    def relay_message(self, member: Member, payload: bytes, to=()) -> int:
        """Relay over TCP from ``member`` (stamped with its id) to ``to`` or all other members."""
        return self.manager.deliver_message(self, member, payload, self._targets(member, to))

    def relay_datagram(self, member: Member, payload: bytes, to=()) -> int:
        """Relay over UDP from ``member`` to ``to`` or all other members (within its relay budget)."""
        return self.manager.deliver_datagram(self, member, payload, self._targets(member, to))

    def kick(self, member_id: int, reason: str = "kicked") -> bool:
        """Remove a member (room_left with ``reason``; a leave presence event to the others)."""
        member = self.members.get(member_id)
        if member is None:
            return False
        self.manager.remove(self, member, str(reason)[:codec.MAX_REASON] or "kicked")
        return True

    def set_label(self, label: dict) -> None:
        """Replace the label and tell every member (room_label); ValueError if not a small object."""
        try:
            codec.check_label(label, self.manager.max_label_bytes)
        except RoomRefused as refused:
            raise ValueError(refused.reason)
        self.label = label
        self.manager.broadcast(self, codec.label_changed(self.id, label))
        self.manager._changed(self)

    def close(self, reason: str = "closed") -> None:
        """Close the room: members get room_left ``closed``, the handler ``room_closed``."""
        self.manager.close(self, reason)

    # -- helpers --------------------------------------------------------------

    def _targets(self, sender: "Member | None", to) -> list:
        members = self.members
        if to:
            targets = [members[m] for m in dict.fromkeys(to) if m in members]
        else:
            targets = list(members.values())
        if sender is not None:
            targets = [m for m in targets if m is not sender]
        return targets


class RoomManager:
    """Every room of one server; the rooms' public API for the game is below "for the game".

    ``handlers`` maps a room type to a callable that makes its handler (one
    per room; others get ``RelayRoom``); ``tick_rates`` maps a type to ticks
    per second.  Limits: README.md, "Limits".
    """

    log = Logger()

    def __init__(self, registry, handlers=None, tick_rates=None,
                 max_rooms: int = DEFAULT_MAX_ROOMS,
                 max_rooms_per_session: int = DEFAULT_MAX_ROOMS_PER_SESSION,
                 max_room_members: int = DEFAULT_MAX_ROOM_MEMBERS,
                 max_label_bytes: int = codec.DEFAULT_MAX_LABEL_BYTES,
                 linger: float = DEFAULT_ROOM_LINGER,
                 relay_rate: float = DEFAULT_RELAY_RATE,
                 relay_burst: "float | None" = None,
                 random_bytes=os.urandom):
        self.registry = registry
        self.clock = registry.clock
        self.stats = registry.stats.rooms
        self.handlers = dict(handlers or {})
        self.tick_rates = dict(tick_rates or {})
        self.max_rooms = max_rooms
        self.max_rooms_per_session = max_rooms_per_session
        self.max_room_members = max_room_members
        self.max_label_bytes = max_label_bytes
        self.linger = linger
        self.relay_rate = relay_rate
        self.relay_burst = relay_burst if relay_burst is not None else max(relay_rate, 1.0)
        self.random_bytes = random_bytes
        self.rooms = {}  # room id -> Room
        self.by_type = {}  # room type -> {room id: Room}
        # room type -> (listed open rooms, listed open rooms with a free seat), by member count
        self.listings = {}
        self.memberships = {}  # session -> {room id: Member}
        self.budgets = {}  # session -> RelayBudget (sessions in a room only)
        self.member_count = 0
        self.serial = 0
        self.server = GameServer(registry, self)
        # A cluster node's rooms of other nodes (gamesession.cluster.rooms.ClusterRooms),
        # or None: a room id not found here, a join_or_create with no room here and a
        # listing go to it; it is told of every room opened, changed and closed here.
        self.cluster = None

    # -- for the game -------------------------------------------------------------

    def find(self, room_id: bytes) -> "Room | None":
        """The open or lingering room with this id (8 bytes or its hex), or None."""
        try:
            return self.rooms.get(codec.room_bytes(room_id))
        except ValueError:
            return None

    def of_type(self, room_type: str) -> list:
        """The rooms of a type, oldest first."""
        return list(self.by_type.get(room_type, {}).values())

    def all(self) -> list:
        return list(self.rooms.values())

    def rooms_of(self, session) -> list:
        """The rooms ``session`` is in, as its Member objects (``.room`` is the Room)."""
        return list(self.memberships.get(session, {}).values())

    def __len__(self):
        return len(self.rooms)

    # -- requests from the control channel ------------------------------------------

    def request(self, session, message: dict) -> None:
        """Handle one ``room_*`` frame of a logged-in session.

        Raises ``wire.ProtocolError`` for a malformed frame (the caller
        closes, as for any); answers refusals with ``room_error``.
        """
        try:
            parsed = codec.parse_request(message, self.max_label_bytes)
            answer = self._dispatch[type(parsed)](self, session, parsed)
        except RoomRefused as refused:
            if message["type"] in _JOIN_REQUESTS:
                self.stats.joins[refused.code.name.lower()] += 1
            if refused.code == ErrorCode.BAD_LABEL:
                self.stats.limited["max_label_bytes"] += 1
            self.send(session, refused.message())
            return
        if answer is not None:
            self.send(session, answer)

    def _create(self, session, request):
        self._check_room_quota(session, request.rid)
        return self._create_room(session, request.rid, request.room_type, request.label,
                                 request.max_members, request.listed, request.options)

    def _join(self, session, request):
        room = self.rooms.get(request.room)
        rid = request.rid
        if room is None and self.cluster is not None:
            self._check_room_quota(session, rid)
            return self.cluster.join_elsewhere(session, request)
        if room is None or room.closing:
            raise refusal(ErrorCode.ROOM_NOT_FOUND, rid)
        if request.room in self.memberships.get(session, ()):
            raise refusal(ErrorCode.ALREADY_IN_ROOM, rid)
        self._check_room_quota(session, rid)
        if self._full(room):
            raise refusal(ErrorCode.ROOM_FULL, rid)
        self._ask(room, session, request.options, rid)
        # The handler may have closed the room or filled it while it decided.
        if room.closing:
            raise refusal(ErrorCode.ROOM_NOT_FOUND, rid)
        if self._full(room):
            raise refusal(ErrorCode.ROOM_FULL, rid)
        self._admit(room, session, rid, created=False)

    def _join_or_create(self, session, request):
        rid = request.rid
        self._check_room_quota(session, rid)
        mine = self.memberships.get(session, ())
        listing = self.listings.get(request.room_type)
        for room in listing[1].fullest() if listing is not None else ():
            # (Re-checked: a handler asked before may have changed any room.)
            if room.closing or self._full(room) or room.id in mine:
                continue
            try:
                self._ask(room, session, request.options, rid)
            except RoomRefused:
                continue
            if not room.closing and not self._full(room):
                return self._admit(room, session, rid, created=False)
        if self.cluster is not None:
            return self.cluster.join_or_create_elsewhere(session, request)
        return self.create_here(session, request)

    def create_here(self, session, request):
        """Create the room a ``room_join_or_create`` found nowhere (the quota is checked again:
        a cluster node asks the directory first)."""
        self._check_room_quota(session, request.rid)
        return self._create_room(session, request.rid, request.room_type, request.label,
                                 request.max_members, True, request.options)

    def _leave(self, session, request):
        member = self.memberships.get(session, {}).get(request.room)
        if member is None:
            raise refusal(ErrorCode.NOT_IN_ROOM, request.rid)
        self.remove(member.room, member, "left", rid=request.rid)

    def _list(self, session, request):
        listing = self.listings.get(request.room_type)
        # More rooms than could fit one frame are never looked at.
        fullest = listing[0].first(codec.MAX_LISTED + 1) if listing is not None else []
        infos = [codec.RoomInfo(room.id, room.room_type, room.label, len(room.members),
                                room.max_members) for room in fullest[:codec.MAX_LISTED]]
        more = len(fullest) > codec.MAX_LISTED
        if self.cluster is not None:
            return self.cluster.list_with_others(session, request, infos, more)
        return codec.rooms(request.rid, infos, more=more)

    def _send(self, session, request):
        member = self.memberships.get(session, {}).get(request.room)
        if member is None:
            raise refusal(ErrorCode.NOT_IN_ROOM)
        self.stats.relayed["tcp_in"] += 1
        self._call(member.room, "message_received", member, request.data, request.to)

    _dispatch = {
        codec.CreateRoom: _create,
        codec.JoinRoom: _join,
        codec.JoinOrCreateRoom: _join_or_create,
        codec.LeaveRoom: _leave,
        codec.ListRooms: _list,
        codec.SendToRoom: _send,
    }

    # -- datagrams ----------------------------------------------------------------

    def datagram_received(self, session, payload: bytes) -> None:
        """An authenticated ROOM_SEND from ``session``; anything wrong is dropped silently."""
        dropped = self.registry.stats.dropped
        try:
            room_id, to, data = codec.unpack_room_send(payload)
        except Drop as drop:
            dropped[drop.reason] += 1
            return
        memberships = self.memberships.get(session)
        member = memberships.get(room_id) if memberships is not None else None
        if member is None:
            dropped["room_not_member"] += 1
            return
        self.stats.relayed["udp_in"] += 1
        self._call(member.room, "datagram_received", member, data, to)

    def stray_datagram(self, session, payload: bytes) -> None:
        """A ROOM_RELAY sent to the server: only the server sends those."""
        self.registry.stats.dropped["bad_room_datagram"] += 1

    # -- creating, joining, leaving, closing -------------------------------------------

    def _check_room_quota(self, session, rid):
        if len(self.memberships.get(session, ())) >= self.max_rooms_per_session:
            self.stats.limited["max_rooms_per_session"] += 1
            raise refusal(ErrorCode.TOO_MANY_ROOMS, rid, "in {} rooms already (the most)".format(
                self.max_rooms_per_session))

    def _create_room(self, session, rid, room_type, label, max_members, listed, options):
        if len(self.rooms) >= self.max_rooms:
            self.stats.limited["max_rooms"] += 1
            raise refusal(ErrorCode.ROOMS_EXHAUSTED, rid)
        if max_members is None:
            max_members = self.max_room_members
        elif max_members > self.max_room_members:
            self.stats.limited["max_room_members"] += 1
            max_members = self.max_room_members
        factory = self.handlers.get(room_type, RelayRoom)
        try:
            handler = factory()
        except Exception:
            self.stats.handler_errors["create"] += 1
            self.log.failure("room handler for {room_type} could not be made", room_type=room_type)
            raise refusal(ErrorCode.ROOM_REFUSED, rid, "room handler failed")
        room_id = self.random_bytes(codec.ROOM_ID_SIZE)
        while room_id in self.rooms:
            room_id = self.random_bytes(codec.ROOM_ID_SIZE)
        self.serial += 1
        room = Room(self, room_id, room_type, label, max_members, listed, handler, self.serial)
        self._call(room, "room_created")
        try:
            self._ask(room, session, options, rid)
        except RoomRefused:
            room.closing = True
            self._call(room, "room_closed", "refused")
            raise
        if room.closing:  # the handler closed it while it was being made
            raise refusal(ErrorCode.ROOM_REFUSED, rid, "the room closed")
        self.rooms[room_id] = room
        self.by_type.setdefault(room_type, {})[room_id] = room
        self.listings.setdefault(room_type, (FullestFirst(), FullestFirst()))
        self.stats.created += 1
        self._start_ticks(room)
        if self.cluster is not None:
            self.cluster.opened(room)
        self._admit(room, session, rid, created=True)

    def _ask(self, room, session, options, rid):
        """Ask the handler whether ``session`` may join; RoomRefused(462) if not."""
        answer = self._call(room, "join_attempt", session, options)
        if answer is None or answer is True:
            return
        if answer is _FAILED:
            raise refusal(ErrorCode.ROOM_REFUSED, rid, "room handler failed")
        raise refusal(ErrorCode.ROOM_REFUSED, rid,
                      answer if isinstance(answer, str) and answer else "refused by the room")

    def _admit(self, room, session, rid, created):
        if room.linger_call is not None:
            if room.linger_call.active():
                room.linger_call.cancel()
            room.linger_call = None
        member = Member(room.next_member, session.user, session, room, self.clock.seconds())
        room.next_member += 1
        room.members[member.member_id] = member
        self.memberships.setdefault(session, {})[room.id] = member
        if session not in self.budgets and self.relay_rate:
            self.budgets[session] = RelayBudget(self.relay_rate, self.relay_burst,
                                                self.clock.seconds())
        self.member_count += 1
        self._file(room)
        self._changed(room)
        self.stats.joins["created" if created else "joined"] += 1
        # The others first: if writing to the joiner ends its session (a client
        # that does not read), they see its join and then its leave, in order.
        self.broadcast(room, codec.presence(room.id, "join", member.member_id, member.user),
                       but=member)
        for frame in codec.joined(rid, room.id, room.room_type, member.member_id, room.label,
                                  room.max_members, room.listed, created,
                                  [m.info() for m in room.members.values()]):
            self.send(session, frame)
        if room.members.get(member.member_id) is member:
            member.announced = True
            self._call(room, "joined", member)

    def remove(self, room, member, reason, rid=None):
        """Take ``member`` out of ``room`` for ``reason``: tell it (unless its session ended) and the others."""
        if room.members.get(member.member_id) is not member:
            return
        self._unseat(room, member)
        self._changed(room)
        self.stats.leaves[reason if reason in codec.LEAVE_REASONS else "kicked"] += 1
        session = member.session
        if not session.ended:
            self.send(session, codec.left(room.id, reason, rid))
        self.broadcast(room, codec.presence(room.id, "leave", member.member_id, member.user,
                                            reason))
        if member.announced:  # the handler saw it join
            self._call(room, "left", member, reason)
        if not room.members and not room.closing:
            if self.linger > 0:
                if room.linger_call is None:
                    room.linger_call = self.clock.callLater(self.linger, self.close, room, "empty")
            else:
                self.close(room, "empty")

    def _unseat(self, room, member):
        del room.members[member.member_id]
        session = member.session
        mine = self.memberships.get(session)
        if mine is not None:
            mine.pop(room.id, None)
            if not mine:
                # The relay budget stays: leaving and joining again must not refill it.
                del self.memberships[session]
        self.member_count -= 1
        self._file(room)

    def close(self, room, reason="closed"):
        """Close ``room`` once: members get room_left, then the handler room_closed."""
        if room.closing:
            return
        room.closing = True
        if room.linger_call is not None and room.linger_call.active():
            room.linger_call.cancel()
        room.linger_call = None
        if room.ticker is not None and room.ticker.running:
            room.ticker.stop()
        room.ticker = None
        self._file(room)
        told = "shutdown" if reason == "shutdown" else "closed"
        for member in list(room.members.values()):
            self._unseat(room, member)
            self.stats.leaves[told] += 1
            if not member.session.ended:
                self.send(member.session, codec.left(room.id, told))
        # (A room its handler closed while it was being made was never registered.)
        self.rooms.pop(room.id, None)
        of_type = self.by_type.get(room.room_type, {})
        of_type.pop(room.id, None)
        if not of_type:
            self.by_type.pop(room.room_type, None)
            self.listings.pop(room.room_type, None)
        self.stats.closed[reason if reason in ("empty", "shutdown", "refused") else "handler"] += 1
        if self.cluster is not None:
            self.cluster.closed(room)
        self._call(room, "room_closed", reason)

    def _full(self, room) -> bool:
        """No free seat: members, and on a cluster the seats held for arriving transfers."""
        taken = len(room.members)
        if self.cluster is not None:
            taken += self.cluster.held(room)
        return taken >= room.max_members

    def _changed(self, room):
        if self.cluster is not None and not room.closing and room.id in self.rooms:
            self.cluster.changed(room)

    def _file(self, room):
        """File the room in its type's listings as its state says (after any change)."""
        listing = self.listings.get(room.room_type)
        if listing is None or room.id not in self.rooms:
            return  # not registered (being made, or closed)
        count = len(room.members)
        listed = room.listed and not room.closing
        seats = listed and count < room.max_members
        listed_index, seats_index = listing
        if room.listed_at is not None and (not listed or room.listed_at != count):
            listed_index.remove(room, room.listed_at)
            room.listed_at = None
        if listed and room.listed_at is None:
            listed_index.add(room, count)
            room.listed_at = count
        if room.seats_at is not None and (not seats or room.seats_at != count):
            seats_index.remove(room, room.seats_at)
            room.seats_at = None
        if seats and room.seats_at is None:
            seats_index.add(room, count)
            room.seats_at = count

    def session_suspended(self, session) -> None:
        """The session's connection dropped (resume): its seats stay; the others see ``reconnecting``."""
        self._presence_only(session, "reconnecting", "member_suspended")

    def session_resumed(self, session) -> None:
        """The suspended session resumed: the others see the member ``back``."""
        self._presence_only(session, "back", "member_resumed")

    def _presence_only(self, session, event: str, method: str) -> None:
        for member in list(self.memberships.get(session, {}).values()):
            room = member.room
            self.broadcast(room, codec.presence(room.id, event, member.member_id, member.user),
                           but=member)
            if member.announced and getattr(room.handler, method, None) is not None:
                self._call(room, method, member)

    def session_ended(self, session, reason: str) -> None:
        """The session ended: it leaves every room with the session's reason."""
        for member in list(self.memberships.get(session, {}).values()):
            self.remove(member.room, member, reason)
        self.budgets.pop(session, None)

    def shutdown(self) -> None:
        """The server stops: every room closes with ``shutdown``."""
        for room in list(self.rooms.values()):
            self.close(room, "shutdown")

    # -- ticks -----------------------------------------------------------------------

    def _start_ticks(self, room):
        rate = self.tick_rates.get(room.room_type)
        if not rate:
            return
        room.last_tick = self.clock.seconds()
        room.ticker = task.LoopingCall(self._tick, room)
        room.ticker.clock = self.clock
        room.ticker.start(1.0 / rate, now=False)

    def _tick(self, room):
        now = self.clock.seconds()
        dt, room.last_tick = now - room.last_tick, now
        # Whatever the tick sends (a snapshot per member) leaves together at its end.
        with self.registry.sending_together():
            self._call(room, "tick", dt)

    # -- sending ------------------------------------------------------------------------

    def send(self, session, message: dict, encoded=None) -> bool:
        """``message`` to ``session`` unless it ended (``encoded``: its ``wire.encode``, made once)."""
        if session.ended:
            return False
        session.control.send_message(message, encoded)
        return True

    def broadcast(self, room, message: dict, but=None) -> None:
        """``message`` to every member but ``but``: encoded once, sealed per member's stream."""
        encoded = wire.encode(message)
        for member in list(room.members.values()):
            if member is not but:
                self.send(member.session, message, encoded)

    def _within_budget(self, sender, copies: int) -> bool:
        if sender is None or not copies:
            return True
        budget = self.budgets.get(sender.session)
        if budget is None or budget.spend(self.clock.seconds(), copies):
            return True
        self.stats.limited["relay_rate"] += 1
        return False

    def deliver_message(self, room, sender, payload: bytes, targets) -> int:
        if len(payload) > codec.MAX_ROOM_MESSAGE:
            raise ValueError("room message over {} bytes".format(codec.MAX_ROOM_MESSAGE))
        if not self._within_budget(sender, len(targets)):
            self.send(sender.session, codec.error(
                ErrorCode.RELAY_LIMITED, "over the relay rate ({:g} copies a second); not relayed"
                .format(self.relay_rate)))
            return 0
        message = codec.message(room.id, sender.member_id if sender is not None else codec.HANDLER,
                                payload)
        # One encoding for every member; each member's stream seals its own copy.
        encoded = wire.encode(message)
        sent = 0
        for member in targets:
            if self.send(member.session, message, encoded):
                sent += 1
        self.stats.relayed["tcp_out"] += sent
        return sent

    def deliver_datagram(self, room, sender, payload: bytes, targets) -> int:
        # The sender is the member the manager holds: its id is the only "from" there is.
        datagram = codec.pack_room_relay(
            room.id, sender.member_id if sender is not None else codec.HANDLER, payload)
        if not self._within_budget(sender, len(targets)):
            self.registry.stats.dropped["relay_rate"] += 1
            return 0
        # Sealed for each receiver with its own key and counter, sent in one call.
        sent = self.registry.fan_out([member.session for member in targets], _ROOM_RELAY,
                                     datagram)
        self.stats.relayed["udp_out"] += sent
        self.stats.relayed["udp_no_address"] += len(targets) - sent
        return sent

    def deliver_datagrams(self, room, payloads) -> int:
        """Each member its own room datagram from the room (``from`` 0): see ``Room.send_datagrams``."""
        members = room.members
        pairs = payloads.items() if hasattr(payloads, "items") else payloads
        targets = [(members[member_id].session, codec.pack_room_relay(room.id, codec.HANDLER, data))
                   for member_id, data in pairs if member_id in members]
        sent = self.registry.send_each(_ROOM_RELAY, targets)
        self.stats.relayed["udp_out"] += sent
        self.stats.relayed["udp_no_address"] += len(targets) - sent
        return sent

    # -- guarded handler calls --------------------------------------------------------------

    def _call(self, room, method, *args):
        """Call the room's handler; a raise is logged once per room and method, counted, survived."""
        try:
            return getattr(room.handler, method)(room, *args)
        except Exception:
            self.stats.handler_errors[method] += 1
            if method not in room.failed:
                room.failed.add(method)
                self.log.failure("room handler {method} failed in {room_type} room {room}",
                                 method=method, room_type=room.room_type, room=room.id.hex(),
                                 event="room_handler_error")
            return _FAILED
