"""``ClusterNode``: this server as one node of a cluster.

A Twisted service with three jobs:

- **Heartbeat.**  Every ``ttl / 3`` seconds (at most 1 s) it refreshes this
  node's entry in the directory, which expires after ``ttl`` (default 5 s)
  without one: a node killed with -9 drops out within the TTL.  When a
  heartbeat says the directory did not know the node (first start, a Redis
  restart, an outage longer than the TTL) it re-registers every user it holds
  (``IDirectory.restore``) and ends, with ``replaced``, the sessions of users
  that another node took meanwhile.  While the directory is down it tries
  every 0.25 s (the client reconnects with its own backoff).
- **Admission** (``server.admission.ILoginAdmission``).  A login that passed
  its password check claims the user cluster-wide.  ``--duplicate-login
  kick``: the claim takes the user and the directory tells the old node,
  which ends its session with ``replaced``; ``reject``: refused with 409
  while any live node holds the user.  While the directory is down, logins
  are refused with 503 ``cluster directory unavailable``; sessions that are
  open go on, since per-packet work never touches the directory.
- **Release.**  Every session end (logout, timeout, kick, disconnect,
  shutdown) removes the user, if the entry is still this session's.  On a
  clean stop the node deregisters itself with all it held.

Rooms plug in through ``host_room``, ``room_changed`` and ``room_closed``
(called by ``cluster.rooms.ClusterRooms``), which keep ``rooms`` (what
``restore`` re-registers) and the directory in step; listings, seat
reservations and tickets go through ``call("list_rooms", ...)``,
``call("reserve_seat", ...)`` and ``call("redeem_ticket", ...)``, timed like
every directory operation.  A login with a redeemed ticket (``admit(user,
moving=True)``) claims the user with the ``move`` policy: the node that held
it ends that session with ``moved``.
"""

import binascii
import os
from collections import Counter

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from gamesession.cluster.directory import DEFAULT_NODE_TTL, DirectoryUnavailable
from gamesession.ops.stats import RttHistogram
from gamesession.protocol.wire import ErrorCode
from gamesession.server.admission import ILoginAdmission
from gamesession.server.registry import LoginRefused

UNAVAILABLE = "cluster directory unavailable"
# Upper bounds (seconds) of the directory-operation latency buckets.
OPERATION_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
DOWN_RETRY = 0.25


def unavailable() -> LoginRefused:
    return LoginRefused(ErrorCode.SERVER_FULL, UNAVAILABLE, "directory_unavailable")


@implementer(ILoginAdmission)
class ClusterNode(service.Service):
    """This node's membership in the cluster directory (see the module docstring)."""

    log = Logger()

    def __init__(self, directory, node, registry, clock, ttl: float = DEFAULT_NODE_TTL,
                 duplicate_login: str = "kick", random_bytes=os.urandom, label: str = ""):
        self.directory = directory
        self.node = node
        self.registry = registry
        self.clock = clock
        self.ttl = ttl
        self.interval = min(ttl / 3.0, 1.0)
        self.duplicate_login = duplicate_login
        self.random_bytes = random_bytes
        # Where the directory is, for logs, metrics and status (never a password).
        self.label = label
        self.up = False
        self.held = {}  # user -> (session, claim)
        self.rooms = {}  # room_id -> RoomRecord this node hosts (filled by the rooms code)
        self.timings = {}  # operation -> RttHistogram of its latency
        self.errors = Counter()  # operation -> failures
        self.replaced = 0  # sessions ended because another node took their user
        self.moved = 0  # sessions ended because they moved to another node (a ticket)
        # Called with each {"type": "reserved", ...} event: a seat here held for a ticket.
        self.on_reserved = None
        self._call = None
        self._beating = False
        self._stopping = False
        self._events_epoch = 0

    @property
    def name(self) -> str:
        return self.node.name

    # -- timing every directory call ------------------------------------------------------

    def call(self, operation: str, *args, **kwargs):
        """``directory.<operation>(...)``, timed into ``timings`` (failures into ``errors``)."""
        started = self.clock.seconds()
        try:
            d = defer.maybeDeferred(getattr(self.directory, operation), *args, **kwargs)
        except Exception:
            d = defer.fail()

        def done(result):
            histogram = self.timings.get(operation)
            if histogram is None:
                histogram = self.timings[operation] = RttHistogram(bounds=OPERATION_BOUNDS)
            histogram.observe(self.clock.seconds() - started)
            return result

        def failed(failure):
            self.errors[operation] += 1
            if failure.check(DirectoryUnavailable):
                self._lost(failure.value.reason)
            return failure

        return d.addCallbacks(done, failed)

    # -- the service ------------------------------------------------------------------------

    def startService(self):
        super().startService()
        self._stopping = False
        self.directory.subscribe(self.name, self._event)
        connect = getattr(self.directory, "connect", None)
        if connect is not None:
            connect()
        self.log.info("cluster node {node}: directory {directory}, heartbeat TTL {ttl:g}s",
                      node=self.name, directory=self.label, ttl=self.ttl, event="cluster")
        self._beat()

    def stopService(self):
        self._stopping = True
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        d = self.call("deregister", self.name) if self.up else defer.succeed(None)
        d.addErrback(lambda f: self.log.info("cluster node {node}: could not deregister: {why}",
                                             node=self.name, why=f.getErrorMessage()))
        d.addBoth(lambda _: self.directory.close())
        return d

    def _schedule(self):
        if not self._stopping:
            delay = self.interval if self.up else DOWN_RETRY
            self._call = self.clock.callLater(delay, self._beat)

    def _beat(self):
        self._call = None
        if self._beating or self._stopping:
            return
        self._beating = True
        d = self.call("heartbeat", self.node, self.ttl)
        d.addCallback(self._beaten)
        d.addErrback(lambda f: f.trap(DirectoryUnavailable))
        d.addErrback(lambda f: self.log.failure("cluster heartbeat failed", f))

        def next_beat(_):
            self._beating = False
            self._schedule()
        d.addBoth(next_beat)
        return d

    def _beaten(self, known):
        # Also restore when the events connection came back: kicks sent to
        # this node while it was down were lost (restore finds those users).
        epoch = getattr(self.directory, "events_epoch", 0)
        if known and self.up and epoch == self._events_epoch:
            return None
        self._events_epoch = epoch
        return self._restore()

    def _restore(self):
        users = {user: claim for user, (_, claim) in self.held.items()}
        d = self.call("restore", self.name, users, list(self.rooms.values()))

        def restored(conflicts):
            for user in conflicts:
                entry = self.held.get(user)
                if entry is not None and not entry[0].ended:
                    self.log.info("cluster: user={user} logged in on another node meanwhile",
                                  user=user, event="cluster")
                    self.replaced += 1
                    self.registry.end(entry[0], "replaced")
            if not self.up:
                self.log.info("cluster node {node}: directory up ({users} users re-registered)",
                              node=self.name, users=len(users), event="cluster", up=True)
            self.up = True
        return d.addCallback(restored)

    def _lost(self, reason):
        if self.up:
            self.up = False
            self.log.warn("cluster node {node}: {reason}; open sessions go on, logins are "
                          "refused until it is back", node=self.name, reason=reason,
                          event="cluster", up=False)
            if self._call is not None and self._call.active() and not self._beating:
                self._call.reset(DOWN_RETRY)

    def _event(self, event):
        if event.get("type") == "reserved":
            if self.on_reserved is not None:
                self.on_reserved(event)
            return
        user = event.get("user")
        if event.get("type") != "replaced" or not isinstance(user, str):
            return
        entry = self.held.get(user)
        if entry is None or entry[1] != event.get("claim"):
            return
        if event.get("reason") == "moved":
            self.moved += 1
            self.registry.end(entry[0], "moved")
            return
        self.replaced += 1
        self.registry.end(entry[0], "replaced")

    # -- rooms hosted here -------------------------------------------------------------

    def host_room(self, room):
        """Publish a ``RoomRecord`` hosted on this node (kept for ``restore``)."""
        if room.node != self.name:
            raise ValueError("room {} is hosted on {}, not on this node {}".format(
                room.room_id, room.node, self.name))
        self.rooms[room.room_id] = room
        return self.call("register_room", room)

    def room_changed(self, room_id, **fields):
        """Change a hosted room's ``label``, ``seats``, ``occupied`` or ``meta``."""
        room = self.rooms.get(room_id)
        if room is None:
            raise KeyError(room_id)
        self.rooms[room_id] = attrs.evolve(room, **fields)
        return self.call("update_room", room_id, **fields)

    def room_closed(self, room_id):
        """Withdraw a hosted room (and its unredeemed reservations)."""
        self.rooms.pop(room_id, None)
        return self.call("remove_room", room_id)

    # -- ILoginAdmission -------------------------------------------------------------------

    def admit(self, user, moving=False):
        if not self.up:
            return defer.fail(unavailable())
        claim = binascii.hexlify(self.random_bytes(8)).decode("ascii")
        # A redeemed transfer ticket moves the user's own session here, whatever the rule.
        policy = "move" if moving else self.duplicate_login
        d = self.call("claim_user", user, self.name, claim, policy)

        def decided(result):
            if not result.granted:
                raise LoginRefused(ErrorCode.ALREADY_LOGGED_IN,
                                   "user {} is already logged in".format(user),
                                   "already_logged_in")
            return claim

        def failed(failure):
            if not failure.check(DirectoryUnavailable):
                self.log.failure("cluster claim of user={user} failed", failure, user=user)
            raise unavailable()
        return d.addCallbacks(decided, failed)

    def opened(self, session, claim):
        self.held[session.user] = (session, claim)

    def abandoned(self, user, claim):
        entry = self.held.get(user)
        if entry is not None and not entry[0].ended:
            # A session of this user is still open here: give the entry back to it.
            self._quietly(self.call("claim_user", user, self.name, entry[1], "kick"))
        else:
            self._quietly(self.call("release_user", user, self.name, claim))

    def ended(self, session, reason):
        entry = self.held.get(session.user)
        if entry is None or entry[0] is not session:
            return
        del self.held[session.user]
        # At shutdown, deregistering the node removes all its users at once.
        if self.up and reason != "shutdown":
            self._quietly(self.call("release_user", session.user, self.name, entry[1]))

    def _quietly(self, d):
        # Directory writes after a session: a failure is healed by the next restore.
        d.addErrback(lambda f: f.trap(DirectoryUnavailable))
        d.addErrback(lambda f: self.log.failure("cluster directory call failed", f))
        return d
