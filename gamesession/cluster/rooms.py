"""Rooms across the nodes of a cluster: publishing, listing, joining elsewhere, tickets.

``ClusterRooms`` plugs into one node's ``server.rooms.RoomManager``
(``manager.cluster``):

- **Publishing.**  Every room of this node is registered in the directory
  (``ClusterNode.host_room``: type, label, seats, occupied, listed) when its
  first member is seated, and kept up to date on every join, leave, label
  change and close.  ``ClusterNode`` re-registers all of them after a
  directory outage; a dead node's rooms leave the listings with its TTL.
- **Listing.**  ``room_list`` answers with this node's rooms (read locally,
  always fresh) and the other nodes' rooms from the directory, fullest
  first; the directory's answer for a type is kept ``list_cache`` seconds
  (1 s), so a client that lists in a loop costs the directory at most one
  call per type and second.  While the directory is down: this node's rooms.
- **Joining elsewhere.**  ``room_join`` of a room not on this node, and
  ``room_join_or_create`` when no room of this node fits but one on another
  node does, reserve a seat there (``reserve_seat``) and answer with a
  ``room_redirect``: that node's advertised login address and UDP port and
  the single-use transfer ticket (``protocol.transfer``).  A session has at
  most ``max_pending`` such requests in flight (refused beyond: 503).
- **Arriving.**  ``TicketChecker`` (a twisted.cred checker for
  ``accounts.ITransferTicket``) redeems a ``ticket_login``'s ticket once; the
  login then claims the user with the ``move`` policy, so the session on
  the first node ends with reason ``moved``, and the session is placed in
  the ticket's room as by a ``room_join``.

Per-packet work never touches any of this.
"""

import json
from collections import Counter, OrderedDict

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamesession.cluster.directory import (
    DEFAULT_TICKET_TTL, DirectoryUnavailable, RoomRecord, SeatUnavailable,
)
from gamesession.cluster.node import UNAVAILABLE, unavailable
from gamesession.protocol import rooms as codec
from gamesession.protocol import transfer
from gamesession.protocol.wire import ErrorCode
from gamesession.server.accounts import ITransferTicket
from gamesession.server.registry import LoginRefused

DEFAULT_LIST_CACHE = 1.0
DEFAULT_MAX_PENDING = 4
# Room types whose directory listing is kept (the least recently used goes first).
MAX_CACHED_TYPES = 64
# Rooms of other nodes a join_or_create tries to reserve a seat in before it creates one.
MAX_SEAT_TRIES = 3
_PUBLISHED = ("label", "seats", "occupied", "listed")


class TicketRefused(UnauthorizedLogin):
    """A ticket_login whose ticket the directory does not hold (unknown, used, expired, other node)."""

    refusal = LoginRefused(ErrorCode.BAD_TICKET,
                           "transfer ticket refused (unknown, used, expired or for another node)",
                           "bad_ticket")


def label_text(label: dict) -> str:
    return json.dumps(label, separators=(",", ":"), sort_keys=True)


def room_info(record: RoomRecord) -> "codec.RoomInfo | None":
    """The RoomInfo a client sees for a directory record (None if the record is malformed)."""
    try:
        room = codec.room_bytes(record.room_id)
        label = json.loads(record.label) if record.label else {}
    except ValueError:
        return None
    if not isinstance(label, dict):
        label = {}
    return codec.RoomInfo(room, record.type, label, record.occupied, record.seats)


class ClusterRooms:
    """The rooms of one cluster node as the cluster sees them (see the module docstring)."""

    log = Logger()

    def __init__(self, node, manager, ticket_ttl: float = DEFAULT_TICKET_TTL,
                 list_cache: float = DEFAULT_LIST_CACHE, max_pending: int = DEFAULT_MAX_PENDING):
        self.node = node
        self.manager = manager
        self.clock = node.clock
        self.ticket_ttl = ticket_ttl
        self.list_cache = list_cache
        self.max_pending = max_pending
        self.published = {}  # room id (bytes) -> RoomRecord last sent to the directory
        self.pending = Counter()  # session -> cross-node requests in flight
        self.listings = OrderedDict()  # room type -> (when, [RoomRecord])
        self.waiting = {}  # room type -> [Deferred] waiting for the listing in flight
        self.redirects = 0
        # room id (hex) -> {ticket: deadline}: seats here reserved by other nodes
        self.holds = {}
        manager.cluster = self
        node.cluster_rooms = self
        node.on_reserved = self.reserved

    # -- publishing this node's rooms --------------------------------------------------

    def record(self, room) -> RoomRecord:
        return RoomRecord(room.id.hex(), room.room_type, self.node.name, label_text(room.label),
                          seats=room.max_members, occupied=len(room.members), listed=room.listed)

    def opened(self, room) -> None:
        """A room was made here; it is registered when its first member is seated."""

    def changed(self, room) -> None:
        """A member joined or left, or the label changed: tell the directory what differs."""
        record = self.record(room)
        old = self.published.get(room.id)
        self.published[room.id] = record
        if old is None:
            self.node._quietly(self.node.host_room(record))
            return
        fields = {name: getattr(record, name) for name in _PUBLISHED
                  if getattr(record, name) != getattr(old, name)}
        if fields:
            self.node._quietly(self.node.room_changed(record.room_id, **fields))

    def closed(self, room) -> None:
        self.holds.pop(room.id.hex(), None)
        if self.published.pop(room.id, None) is None:
            return
        if self.node._stopping:  # deregistering the node removes all its rooms at once
            self.node.rooms.pop(room.id.hex(), None)
            return
        self.node._quietly(self.node.room_closed(room.id.hex()))

    # -- seats held for sessions on their way here ------------------------------------

    def reserved(self, event) -> None:
        """The directory reserved a seat here for a ticket: local joins leave it free."""
        room_id, ticket, ttl_ms = event.get("room_id"), event.get("ticket"), event.get("ttl_ms")
        if not isinstance(room_id, str) or not isinstance(ticket, str) or type(ttl_ms) is not int:
            return
        try:
            room = self.manager.rooms.get(codec.room_bytes(room_id))
        except ValueError:
            return
        if room is None:
            return
        held = self.holds.setdefault(room_id, {})
        if len(held) < room.max_members:  # (bounded: the directory never holds more)
            held[ticket] = self.clock.seconds() + ttl_ms / 1000.0

    def held(self, room) -> int:
        """Seats of ``room`` held for tickets not yet redeemed (expired ones dropped)."""
        held = self.holds.get(room.id.hex())
        if not held:
            return 0
        now = self.clock.seconds()
        for ticket, deadline in list(held.items()):
            if deadline <= now:
                del held[ticket]
        if not held:
            del self.holds[room.id.hex()]
        return len(held)

    def release(self, room_id: str, ticket: str) -> None:
        """The ticket was redeemed here: its seat is its holder's now."""
        held = self.holds.get(room_id)
        if held is not None:
            held.pop(ticket, None)
            if not held:
                del self.holds[room_id]

    # -- requests that need the other nodes ------------------------------------------------

    def _begin(self, session, rid) -> bool:
        if not self.node.up:
            self._send(session, codec.error(ErrorCode.SERVER_FULL, UNAVAILABLE, rid))
            self.manager.stats.joins["server_full"] += 1
            return False
        if self.pending[session] >= self.max_pending:
            self._send(session, codec.error(
                ErrorCode.SERVER_FULL, "{} cluster requests in flight already".format(
                    self.max_pending), rid))
            self.manager.stats.limited["cluster_pending"] += 1
            return False
        self.pending[session] += 1
        return True

    def _end(self, result, session):
        self.pending[session] -= 1
        if self.pending[session] <= 0:
            del self.pending[session]
        return result

    def _send(self, session, message):
        if not session.ended:
            session.control.send_message(message)

    def join_elsewhere(self, session, request) -> None:
        """``room_join`` of a room not on this node: reserve a seat where it is, redirect."""
        if not self._begin(session, request.rid):
            return
        d = self._reserve(session, request.room)
        d.addCallback(self._redirect, session, request.room, request.rid)
        d.addErrback(self._refuse, session, request.rid)
        d.addErrback(self._failed, session, request.rid)
        d.addBoth(self._end, session)

    def _reserve(self, session, room: bytes):
        return self.node.call("reserve_seat", room.hex(), session.user, self.ticket_ttl)

    def _redirect(self, ticket, session, room, rid):
        if ticket.node == self.node.name:
            # The directory still has a room of ours that is gone here.
            raise SeatUnavailable("no_such_room")
        d = self.node.call("live_nodes")

        def found(nodes):
            target = next((n for n in nodes if n.name == ticket.node), None)
            if target is None or not target.login_port or not target.udp_port:
                raise SeatUnavailable("node_gone")
            self.redirects += 1
            self.manager.stats.joins["redirected"] += 1
            self.log.info("room {room}: user={user} sent to node {node}", room=room.hex(),
                          user=session.user, node=target.name, event="room_redirect")
            self._send(session, transfer.redirect(rid, room, target.host, target.login_port,
                                                  target.udp_port, ticket.ticket,
                                                  ticket.expires_in))
        return d.addCallback(found)

    def _refuse(self, failure, session, rid):
        failure.trap(SeatUnavailable, DirectoryUnavailable)
        if failure.check(DirectoryUnavailable):
            code, reason = ErrorCode.SERVER_FULL, UNAVAILABLE
        elif failure.value.reason == "room_full":
            code, reason = ErrorCode.ROOM_FULL, "room full"
        else:
            code, reason = ErrorCode.ROOM_NOT_FOUND, "no such room"
        self.manager.stats.joins[code.name.lower()] += 1
        self._send(session, codec.error(code, reason, rid))

    def _failed(self, failure, session, rid):
        self.log.failure("cluster room request of user={user} failed", failure, user=session.user)
        self._send(session, codec.error(ErrorCode.INTERNAL, "internal error", rid))

    def join_or_create_elsewhere(self, session, request) -> None:
        """No room of this node fits: the fullest with a free seat on another node, else create here."""
        if not self.node.up or self.pending[session] >= self.max_pending:
            return self.manager.create_here(session, request)  # (a refusal raises: answered)
        self.pending[session] += 1
        d = self._listing(request.room_type, fresh=True)
        d.addCallback(self._choose, session, request)
        d.addErrback(lambda f: f.trap(DirectoryUnavailable) and None)
        d.addCallback(self._create_unless_moved, session, request)
        d.addErrback(self._failed, session, request.rid)
        d.addBoth(self._end, session)

    @defer.inlineCallbacks
    def _choose(self, records, session, request):
        candidates = sorted((r for r in records
                             if r.node != self.node.name and r.occupied < r.seats),
                            key=lambda r: (-r.occupied, r.room_id))
        for record in candidates[:MAX_SEAT_TRIES]:
            if session.ended:
                return True
            try:
                room = codec.room_bytes(record.room_id)
                ticket = yield self._reserve(session, room)
                yield self._redirect(ticket, session, room, request.rid)
            except (ValueError, SeatUnavailable):
                continue
            return True
        return False

    def _create_unless_moved(self, moved, session, request):
        if moved or session.ended:
            return
        try:
            self.manager.create_here(session, request)
        except codec.RoomRefused as refused:
            self.manager.stats.joins[refused.code.name.lower()] += 1
            self._send(session, refused.message())

    def list_with_others(self, session, request, infos, more) -> None:
        """``room_list``: this node's rooms (``infos``) and the other nodes', fullest first."""
        if not self.node.up or self.pending[session] >= self.max_pending:
            return codec.rooms(request.rid, infos, more=more)
        self.pending[session] += 1
        d = self._listing(request.room_type)

        def answer(records):
            others = [room_info(r) for r in records if r.node != self.node.name]
            merged = sorted(infos + [i for i in others if i is not None],
                            key=lambda i: -i.members)
            self._send(session, codec.rooms(request.rid, merged[:codec.MAX_LISTED],
                                            more=more or len(merged) > codec.MAX_LISTED))

        def local_only(failure):
            failure.trap(DirectoryUnavailable)
            self._send(session, codec.rooms(request.rid, infos, more=more))
        d.addCallbacks(answer, local_only)
        d.addErrback(self._failed, session, request.rid)
        d.addBoth(self._end, session)

    def _listing(self, room_type, fresh=False):
        """The directory's rooms of ``room_type``: cached for ``list_cache`` s, one call in flight per type."""
        now = self.clock.seconds()
        cached = self.listings.get(room_type)
        if not fresh and cached is not None and now - cached[0] < self.list_cache:
            self.listings.move_to_end(room_type)
            return defer.succeed(cached[1])
        waiter = defer.Deferred()
        if room_type in self.waiting:
            self.waiting[room_type].append(waiter)
            return waiter
        self.waiting[room_type] = [waiter]

        def done(result):
            ok = not isinstance(result, Failure)
            if ok:
                self.listings[room_type] = (now, result)
                self.listings.move_to_end(room_type)
                while len(self.listings) > MAX_CACHED_TYPES:
                    self.listings.popitem(last=False)
            for d in self.waiting.pop(room_type, []):
                if ok:
                    d.callback(result)
                else:
                    d.errback(result)
        self.node.call("list_rooms", room_type).addBoth(done)
        return waiter


@implementer(ICredentialsChecker)
class TicketChecker:
    """Redeems the ticket of a ``ticket_login`` (once); the avatar id is the ticket's user.

    The redeemed ``Ticket`` is left on the credentials (``redeemed``) for the
    login to place the session in its room.  Unknown, used, expired or
    forged: ``TicketRefused`` (419); directory down: 503.
    """

    credentialInterfaces = (ITransferTicket,)

    def __init__(self, node):
        self.node = node

    def requestAvatarId(self, credentials):
        if not self.node.up:
            return defer.fail(unavailable())
        d = self.node.call("redeem_ticket", credentials.ticket, self.node.name)

        def redeemed(ticket):
            if ticket is None:
                raise TicketRefused()
            credentials.redeemed = ticket
            rooms = getattr(self.node, "cluster_rooms", None)
            if rooms is not None:
                rooms.release(ticket.room_id, ticket.ticket)
            return ticket.user

        def failed(failure):
            failure.trap(DirectoryUnavailable)
            raise unavailable()
        return d.addCallbacks(redeemed, failed)
