"""Suspended sessions, their grace timers and the resume tickets (server side).

When the control connection of a logged-in session closes without a logout,
``SessionRegistry.control_lost`` asks ``ResumeTable.suspend``: with a grace
(``--resume-grace``, seconds, 0 = off) the session is *suspended*, not ended.
It keeps its token, UDP keys, address, rooms and application state; UDP keeps
working and the session timeout still applies to UDP silence; messages the
game sends over TCP meanwhile wait in a bounded queue (``max_queued_bytes``;
beyond it they are dropped and counted) and go out after the resume.  The
grace timer runs on the registry's injected clock; when it fires the session
ends with ``disconnected``.

A resume (``login.LoginProtocol._resume``) presents a ticket id and a proof
(``protocol.resume.proof``) over a fresh handshake.  ``ResumeTable.resume``
checks it in constant time and moves the session onto the new connection
(``SessionRegistry.move``: new token, new UDP keys; the old token stops at
once) with a fresh single-use ticket.  A session that still has a connection
(the client saw it die first, e.g. after a network change) is taken over the
same way; the old connection is closed without ending the session.

Every ticket of an ended session (and every used ticket) leaves a bounded,
expiring *tombstone*, so that only the holder of its secret learns why it is
refused (``used``, ``expired`` or ``ended`` with the reason): a kicked
client is told it was kicked and does not log in again by itself.
"""

import collections

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from gamesession.protocol import resume as protocol
from gamesession.protocol import wire
from gamesession.protocol.wire import ErrorCode
from gamesession.server.registry import IControlChannel, LoginRefused

DEFAULT_MAX_QUEUED_BYTES = 256 * 1024


class ResumeRefused(LoginRefused):
    """A refused resume: error 410 with ``refused`` (and ``ended``) members."""

    def __init__(self, refused: str, ended: "str | None" = None):
        message = protocol.refusal(refused, ended)
        super().__init__(ErrorCode.RESUME_REFUSED, message["reason"], "resume_" + refused)
        self.message = message
        self.refused = refused


@implementer(IControlChannel)
class SuspendedControl:
    """The control channel of a suspended session: keeps what the game sends, bounded.

    ``queue`` holds (method, argument) pairs to replay on the new connection:
    ``send_data`` payloads and ``send_message`` control messages (room events).
    """

    def __init__(self, max_bytes: int, host=None):
        self.max_bytes = max_bytes
        # The address of the connection it stands in for (--max-sessions-per-address).
        self.host = host
        self.queue = collections.deque()
        self.size = 0
        self.dropped = 0

    def _keep(self, method: str, argument, size: int) -> None:
        if self.size + size > self.max_bytes:
            self.dropped += 1
            return
        self.queue.append((method, argument))
        self.size += size

    def send_data(self, payload: bytes) -> None:
        if len(payload) > wire.MAX_DATA:
            raise ValueError("message payload over {} bytes".format(wire.MAX_DATA))
        self._keep("send_data", payload, len(payload))

    def send_message(self, message: dict, encoded: "bytes | None" = None) -> None:
        self._keep("send_message", message,
                   len(wire.encode(message) if encoded is None else encoded))

    def session_ended(self, reason: str) -> None:
        """Nobody to tell over TCP; the registry says it over UDP where it can."""

    def detach(self) -> None:
        """Nothing to close."""


@attrs.define(eq=False)
class _Ticket:
    session: object
    ticket: protocol.Ticket
    suspended: "SuspendedControl | None" = None
    suspended_at: float = 0.0
    timer: object = None


@attrs.frozen
class _Tombstone:
    secret: bytes
    refused: str
    ended: "str | None"
    until: float


@attrs.frozen
class Resumption:
    """A successful resume: the session, its new ticket, the messages that waited."""

    session: object
    ticket: protocol.Ticket
    queued: list
    dropped: int
    away: float


class ResumeTable:
    """Tickets by id and by session, suspended sessions, tombstones; all bounded.

    Live tickets: one per live session (``max_sessions`` bounds them).
    Tombstones: at most ``max_tombstones`` (default ``max_sessions``), each
    kept for ``max(grace, 60)`` seconds; the oldest go first.
    """

    log = Logger()

    def __init__(self, registry, grace: float = 0.0,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
                 max_tombstones: "int | None" = None):
        self.registry = registry
        self.grace = grace
        self.max_queued_bytes = max_queued_bytes
        self.max_tombstones = max_tombstones if max_tombstones is not None else registry.max_sessions
        self.tombstone_life = max(grace, 60.0)
        self.by_id = {}
        self.by_session = {}
        self.tombstones = collections.OrderedDict()
        self.suspended_count = 0

    @property
    def enabled(self) -> bool:
        return self.grace > 0

    def __len__(self):
        return len(self.by_id)

    # -- tickets ------------------------------------------------------------------

    def issue(self, session) -> "protocol.Ticket | None":
        """A fresh ticket for a session that logged in or resumed (None when off)."""
        if not self.enabled:
            return None
        random_bytes = self.registry.random_bytes
        resume_id = random_bytes(protocol.RESUME_ID_SIZE)
        while resume_id in self.by_id or resume_id in self.tombstones:
            resume_id = random_bytes(protocol.RESUME_ID_SIZE)
        ticket = protocol.Ticket(resume_id, random_bytes(protocol.RESUME_SECRET_SIZE), self.grace)
        entry = _Ticket(session, ticket)
        self.by_id[resume_id] = entry
        self.by_session[session] = entry
        return ticket

    def is_suspended(self, session) -> bool:
        entry = self.by_session.get(session)
        return entry is not None and entry.suspended is not None

    # -- suspension ---------------------------------------------------------------

    def suspend(self, session) -> bool:
        """Suspend a session whose connection closed; False when it must end instead."""
        entry = self.by_session.get(session)
        if entry is None or entry.suspended is not None or session.ended:
            return False
        registry = self.registry
        now = registry.clock.seconds()
        registry.by_control.pop(session.control, None)
        entry.suspended = session.control = SuspendedControl(
            self.max_queued_bytes, getattr(session.control, "host", None))
        entry.suspended_at = now
        entry.timer = registry.clock.callLater(self.grace, self._expire, entry)
        self.suspended_count += 1
        registry.stats.suspended += 1
        self.log.info("session suspended: user={user}; resumable for {grace:g}s",
                      user=session.user, grace=self.grace, event="session_suspended")
        self._notify("session_suspended", session)
        registry.rooms.session_suspended(session)
        return True

    def _expire(self, entry: _Ticket) -> None:
        entry.timer = None
        self.registry.end(entry.session, "disconnected")

    def _unsuspend(self, entry: _Ticket) -> None:
        if entry.suspended is None:
            return
        entry.suspended = None
        self.suspended_count -= 1
        self.registry.stats.suspended -= 1
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None

    def forget(self, session, reason: str) -> None:
        """The session ended (``SessionRegistry.end``): its ticket becomes a tombstone."""
        entry = self.by_session.pop(session, None)
        if entry is None:
            return
        expired = entry.suspended is not None and reason == "disconnected"
        self._unsuspend(entry)
        del self.by_id[entry.ticket.resume_id]
        if expired:
            self._bury(entry.ticket, protocol.REFUSED_EXPIRED, None)
        else:
            self._bury(entry.ticket, protocol.REFUSED_ENDED, reason)

    def _bury(self, ticket, refused, ended) -> None:
        now = self.registry.clock.seconds()
        tombstones = self.tombstones
        while tombstones:
            oldest = next(iter(tombstones.values()))
            if oldest.until > now and len(tombstones) < self.max_tombstones:
                break
            tombstones.popitem(last=False)
        if self.max_tombstones > 0:
            tombstones[ticket.resume_id] = _Tombstone(ticket.secret, refused, ended,
                                                      now + self.tombstone_life)

    # -- resume -------------------------------------------------------------------

    def resume(self, resume_id: bytes, proof_bytes: bytes, publics, control, keys) -> Resumption:
        """Check a resume and move its session onto ``control``; else ResumeRefused.

        ``publics`` is (ce.pub, se.pub, ss.pub) of the handshake the request came on.
        """
        if not self.enabled:
            raise ResumeRefused(protocol.REFUSED_OFF)
        entry = self.by_id.get(resume_id)
        if entry is None:
            tombstone = self.tombstones.get(resume_id)
            if (tombstone is None or tombstone.until <= self.registry.clock.seconds()
                    or not protocol.proof_matches(protocol.proof(tombstone.secret, *publics),
                                                  proof_bytes)):
                raise ResumeRefused(protocol.REFUSED_UNKNOWN)
            raise ResumeRefused(tombstone.refused, tombstone.ended)
        if not protocol.proof_matches(protocol.proof(entry.ticket.secret, *publics), proof_bytes):
            # Says no more than for an unknown id: the id alone proves nothing.
            raise ResumeRefused(protocol.REFUSED_UNKNOWN)
        session = entry.session
        registry = self.registry
        now = registry.clock.seconds()
        suspended = entry.suspended
        away = now - entry.suspended_at if suspended is not None else 0.0
        self._unsuspend(entry)
        del self.by_id[resume_id]
        del self.by_session[session]
        self._bury(entry.ticket, protocol.REFUSED_USED, None)
        old_control = registry.move(session, control, keys)
        if suspended is None:
            # Taken over from a connection the client gave up on.
            old_control.detach()
        ticket = self.issue(session)
        registry.stats.resumes["ok"] += 1
        queued = list(suspended.queue) if suspended is not None else []
        dropped = suspended.dropped if suspended is not None else 0
        return Resumption(session, ticket, queued, dropped, away)

    @staticmethod
    def deliver(resumption: Resumption, control) -> None:
        """Send what waited during the suspension on the new connection, in order."""
        for method, argument in resumption.queued:
            getattr(control, method)(argument)

    def announce(self, resumption: Resumption, peer) -> None:
        """Log a resume and tell the application (after ``resumed`` went out)."""
        session = resumption.session
        self.log.info("resume ok: user={user} from {peer} after {away:.1f}s away "
                      "({queued} queued messages delivered, {dropped} dropped)",
                      user=session.user, peer=peer, away=resumption.away,
                      queued=len(resumption.queued), dropped=resumption.dropped,
                      event="resume", outcome="ok")
        self._notify("session_resumed", session)
        self.registry.rooms.session_resumed(session)

    def _notify(self, method: str, session) -> None:
        # Optional methods (application.IResumeListener): older applications lack them.
        if getattr(self.registry.application, method, None) is not None:
            self.registry.notify_application(method, session)
