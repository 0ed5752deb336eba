"""Following a ``room_redirect``: the GameClient's session moves to another node.

On a cluster a room lives on one node.  When a join (or join_or_create)
answers with a redirect (``protocol.transfer.RoomRedirect``), the client
does what docs/protocol.md §10.9 says, by itself:

1. a new TCP connection to the hosting node's advertised address, a fresh
   handshake against the same pinned server key, and ``ticket_login``
   (``ClientCore.follow``) instead of the password login;
2. on ``welcome``: a new UDP socket towards that node's UDP port, with the
   new session's token and keys (the old channel's keys and counters are
   dropped, never reused); the old connection is closed, its rooms are left
   with reason ``moved``; the join's Deferred fires with the Room on the new node;
3. if the new node refuses (an expired ticket, a node that went away), the
   join fails with ``RoomRefused`` and the client stays on the first node
   when its session there is still alive (else the session ends).

``on_moved`` (an ``EventSlot``) reports each move with its RoomRedirect.
"""

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

from gamesession.client.events import EventSlot
from gamesession.protocol.clientcore import RoomLeft
from gamesession.protocol.rooms import RoomRefused

MOVE_TIMEOUT = 10.0
# Frames of the first node held while a move is under way (its session goes on if the move fails).
MAX_HELD_FRAMES = 1024


class Moves:
    """The redirect-following half of GameClient (mixed into it)."""

    on_moved = EventSlot(
        "callable(RoomRedirect): the session moved to another node of the cluster\n"
        "(``host``, ``port``) to join ``room``; called once the new node took it.")

    log = Logger()
    _moving = None  # the RoomRedirect being followed
    _left_behind = frozenset()

    def _retired_control(self, control, frame=None) -> bool:
        """Whether ``control`` is a connection this client is leaving or left.

        Its frames are held (a move that fails goes on with them, in order) and
        otherwise dropped: its session ends with ``moved``.
        """
        if control in self._left_behind:
            if frame is None:  # its connectionLost: forgotten
                self._left_behind.discard(control)
            return True
        held = getattr(self, "_retired", {}).get(control)
        if held is None:
            return False
        if frame is not None and len(held) < MAX_HELD_FRAMES:
            held.append(frame)
        return True

    def _follow(self, redirect) -> None:
        if self._moving is not None or self.end_reason is not None:
            d = self._requests.pop(redirect.rid, None)
            if d is not None:
                d.errback(RoomRefused(503, "already moving to another node", redirect.rid))
            return
        self._moving = redirect
        defer.ensureDeferred(self._move(redirect)).addErrback(
            lambda f: self.log.failure("following a redirect failed", f))

    async def _move(self, redirect):
        old = (self.core, self.control, self.udp, self.server_udp, self.welcome)
        if not hasattr(self, "_retired"):
            self._retired = {}  # control -> frames held while the move is under way
            self._left_behind = set()  # controls of sessions that moved (closing)
        self._retired[self.control] = []
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.core = self.core.follow(redirect, self._join_options.get(redirect.rid))
        self.control = self.udp = None
        self._logged_in = defer.Deferred()
        endpoint = HostnameEndpoint(self.reactor, redirect.host, redirect.port,
                                    timeout=MOVE_TIMEOUT)
        try:
            await self._login(endpoint, None, redirect.udp_port, MOVE_TIMEOUT)
        except Exception as e:
            self._moving = None
            self._move_failed(redirect, old, e)
            return
        self._moving = None
        if hasattr(self, "endpoint"):
            self.endpoint = endpoint  # a reconnect (session resume) goes to the new node
        old_core, old_control, old_udp = old[0], old[1], old[2]
        self._retired.pop(old_control, None)  # its session ends with moved: nothing to keep
        if old_control is not None:
            self._left_behind.add(old_control)
        if old_udp is not None:
            old_udp.stopListening()
        if old_control is not None and old_control.transport.connected:
            old_control.transport.loseConnection()
        # The rooms of the first node are left: the session moved.
        for room_id, room in list(self.rooms.items()):
            if room.room_id in old_core.rooms:
                del self.rooms[room_id]
                room._gone(RoomLeft(room=room.room_id, reason="moved"))
        self._emit("on_moved", redirect)

    def _move_failed(self, redirect, old, exc):
        core, control, udp, server_udp, welcome = old
        if self.control is not None:  # the refused connection: its close is not the session's
            self._left_behind.add(self.control)
        if self.udp is not None:
            self.udp.stopListening()
        d = self._requests.pop(redirect.rid, None)
        code = getattr(exc, "code", 503)
        reason = "could not move to {}:{}: {}".format(redirect.host, redirect.port,
                                                      getattr(exc, "reason", exc))
        if control is not None and control.transport.connected and udp is not None:
            # The first node still holds the session: carry on there, with what it sent meanwhile.
            held = self._retired.pop(control, [])
            self.core, self.control, self.udp, self.server_udp, self.welcome = old
            self._timer = self.reactor.callLater(self._tick_interval(), self._tick)
            for frame in held:
                self._frame_received(frame)
        else:
            self.core, self.control = core, None
            self._end("moved")
        if d is not None:
            d.errback(RoomRefused(code if isinstance(code, int) else 503, reason, redirect.rid))
