"""``InMemoryDirectory``: the directory of one process.

The directory a single node uses (no ``--cluster``), and the reference
against which ``RedisDirectory`` is checked: one test suite runs on both
(tests/test_directory.py).  Time comes from an injected ``IReactorTime``.
Operations fire their Deferreds at once; events go to subscribers right
after the change that caused them, like a Redis PUBLISH inside the script.
"""

import secrets

from twisted.internet import defer
from zope.interface import implementer

from gamesession.cluster.directory import (
    ROOM_FIELDS, ClaimResult, DirectoryUnavailable, IDirectory, NodeRecord, RoomRecord, SeatUnavailable, Ticket,
    UserRecord, check_node_name,
)


@implementer(IDirectory)
class InMemoryDirectory:
    def __init__(self, clock, token=secrets.token_urlsafe):
        self.clock = clock
        self.token = token
        self.nodes = {}  # name -> (NodeRecord, deadline)
        self.users = {}  # user -> UserRecord
        self.rooms = {}  # room_id -> RoomRecord
        self.reserved = {}  # room_id -> {ticket: deadline}
        self.tickets = {}  # ticket -> (Ticket, deadline)
        self.listeners = {}  # node -> [on_event]

    # -- helpers ---------------------------------------------------------------------

    def _alive(self, name) -> bool:
        entry = self.nodes.get(name)
        return entry is not None and entry[1] > self.clock.seconds()

    def _send(self, node, event):
        for on_event in list(self.listeners.get(node, ())):
            on_event(dict(event))

    def _drop_node(self, name):
        self.nodes.pop(name, None)
        for user, record in list(self.users.items()):
            if record.node == name:
                del self.users[user]
        for room_id, room in list(self.rooms.items()):
            if room.node == name:
                self._drop_room(room_id)

    def _drop_room(self, room_id):
        self.rooms.pop(room_id, None)
        for ticket in self.reserved.pop(room_id, {}):
            self.tickets.pop(ticket, None)

    def _live_reservations(self, room_id) -> dict:
        now = self.clock.seconds()
        held = self.reserved.setdefault(room_id, {})
        for ticket, deadline in list(held.items()):
            if deadline <= now:
                del held[ticket]
                self.tickets.pop(ticket, None)
        return held

    # -- nodes ----------------------------------------------------------------------

    def heartbeat(self, node: NodeRecord, ttl: float):
        now = self.clock.seconds()
        for name, (_, deadline) in list(self.nodes.items()):
            if deadline <= now and name != node.name:
                self._drop_node(name)
        known = self._alive(node.name)
        self.nodes[node.name] = (node, now + ttl)
        return defer.succeed(known)

    def deregister(self, name):
        self._drop_node(check_node_name(name))
        return defer.succeed(None)

    def live_nodes(self):
        return defer.succeed(sorted((record for name, (record, _) in self.nodes.items()
                                     if self._alive(name)), key=lambda r: r.name))

    # -- users ----------------------------------------------------------------------

    def claim_user(self, user, node, claim, policy):
        if not self._alive(node):
            return defer.fail(DirectoryUnavailable(
                "cluster directory unavailable (node not registered)"))
        previous = self.users.get(user)
        if previous is not None and not self._alive(previous.node):
            previous = None
        if previous is not None and policy == "reject":
            return defer.succeed(ClaimResult(False, previous))
        self.users[user] = UserRecord(user, node, claim)
        if previous is not None and previous.node != node:
            event = {"type": "replaced", "user": user, "claim": previous.claim, "by": node}
            if policy == "move":
                event["reason"] = "moved"
            self._send(previous.node, event)
        return defer.succeed(ClaimResult(True, previous))

    def release_user(self, user, node, claim):
        record = self.users.get(user)
        if record is not None and record.node == node and record.claim == claim:
            del self.users[user]
            return defer.succeed(True)
        return defer.succeed(False)

    def user_node(self, user):
        record = self.users.get(user)
        return defer.succeed(record if record is not None and self._alive(record.node) else None)

    def restore(self, node, users, rooms):
        conflicts = []
        for user, claim in sorted(users.items()):
            record = self.users.get(user)
            if (record is not None and record.node != node and self._alive(record.node)):
                conflicts.append(user)
            elif record is not None and record.node == node and record.claim != claim:
                # A newer login of this user on this node: it has the entry.
                continue
            else:
                self.users[user] = UserRecord(user, node, claim)
        for user, record in list(self.users.items()):
            if record.node == node and user not in users:
                del self.users[user]
        keep = {room.room_id for room in rooms}
        for room_id, room in list(self.rooms.items()):
            if room.node == node and room_id not in keep:
                self._drop_room(room_id)
        for room in rooms:
            self.rooms[room.room_id] = room
        return defer.succeed(conflicts)

    # -- rooms ----------------------------------------------------------------------

    def register_room(self, room: RoomRecord):
        self.rooms[room.room_id] = room
        return defer.succeed(None)

    def update_room(self, room_id, **fields):
        unknown = set(fields) - set(ROOM_FIELDS)
        if unknown:
            raise TypeError("update_room: no such field(s) {}".format(", ".join(sorted(unknown))))
        room = self.rooms.get(room_id)
        if room is None:
            return defer.succeed(None)
        room = RoomRecord(**{**room.to_json(), **fields})
        self.rooms[room_id] = room
        return defer.succeed(room)

    def remove_room(self, room_id):
        self._drop_room(room_id)
        return defer.succeed(None)

    def list_rooms(self, room_type):
        return defer.succeed(sorted(
            (room for room in self.rooms.values()
             if room.type == room_type and room.listed and self._alive(room.node)),
            key=lambda r: r.room_id))

    def reserve_seat(self, room_id, user, ttl):
        room = self.rooms.get(room_id)
        if room is None:
            return defer.fail(SeatUnavailable("no_such_room"))
        if not self._alive(room.node):
            return defer.fail(SeatUnavailable("node_gone"))
        held = self._live_reservations(room_id)
        if room.occupied + len(held) >= room.seats:
            return defer.fail(SeatUnavailable("room_full"))
        ticket = Ticket(self.token(16), user, room_id, room.node, ttl)
        deadline = self.clock.seconds() + ttl
        held[ticket.ticket] = deadline
        self.tickets[ticket.ticket] = (ticket, deadline)
        self._send(room.node, {"type": "reserved", "room_id": room_id, "ticket": ticket.ticket,
                               "ttl_ms": int(round(ttl * 1000))})
        return defer.succeed(ticket)

    def redeem_ticket(self, ticket, node):
        entry = self.tickets.get(ticket)
        if entry is None:
            return defer.succeed(None)
        record, deadline = entry
        if record.node != node:
            return defer.succeed(None)
        del self.tickets[ticket]
        self.reserved.get(record.room_id, {}).pop(ticket, None)
        if deadline <= self.clock.seconds():
            return defer.succeed(None)
        return defer.succeed(record)

    # -- events ---------------------------------------------------------------------

    def subscribe(self, node, on_event):
        self.listeners.setdefault(node, []).append(on_event)
        return defer.succeed(None)

    def close(self):
        self.listeners.clear()
        return defer.succeed(None)
