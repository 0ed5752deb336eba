"""The session registry shared by the TCP login service and the UDP game port.

Sessions are indexed by token (for datagrams), by user (one login per user)
and by control connection (the TCP side).  Every way a session ends goes
through ``SessionRegistry.end``, which keeps the three indexes consistent,
tells the client why, logs out the cred avatar and tells the application.
Time comes from an injected ``IReactorTime``.
"""

import os
import struct
from contextlib import nullcontext

from twisted.internet import udp
from twisted.logger import Logger
from zope.interface import Interface, implementer

from gamesession.server.admission import LOCAL
from gamesession.server.application import EchoApplication, ISession
from gamesession.server.gameport import BatchedPort
from gamesession.protocol.datagram import (HEADER_SIZE, MIN_PACKET, TOKEN_SIZE, DatagramChannel, Drop,
                                           Kind, plaintext, seal_plaintext)
from gamesession.server.limits import spend_token
from gamesession.server.rooms import RoomManager
from gamesession.server.timers import DeadlineWheel
from gamesession.ops.stats import ServerStats
from gamesession.protocol.wire import ErrorCode, loggable

END_REASONS = ("logout", "disconnected", "timeout", "kicked", "replaced", "shutdown", "moved")

# Sessions one bounded timer step looks at (``sweep(limit=...)``).
SWEEP_STEP = 256
# Timer checks file a session this much before its deadline, so that
# rounding in ``last_seen + timeout`` never files it after the moment the
# exact check (``now - last_seen >= timeout``) says it is due.
_EARLY = 1e-6

# Plain ints for the per-packet comparisons: an IntEnum attribute costs ~100 ns.
_DATA = int(Kind.DATA)
_PING = int(Kind.PING)
_PONG = int(Kind.PONG)
_DISCONNECT = int(Kind.DISCONNECT)
_ROOM_SEND = int(Kind.ROOM_SEND)
_ROOM_RELAY = int(Kind.ROOM_RELAY)
_counter_at = struct.Struct("<Q").unpack_from


def datagram_sender(transport):
    """``send(packet, address)`` for a UDP transport, as cheap as it can be.

    On a real, unconnected ``twisted.internet.udp.Port`` this is the socket's
    own ``sendto``: ``Port.write`` checks the address with ``isIPAddress``
    three times per datagram (a third of the per-packet cost of an echo), and
    the game port only ever answers addresses that ``recvfrom`` on the same
    socket returned.  Like ``Port.write`` it ignores ECONNREFUSED; other
    errors raise OSError.  A ``BatchedPort`` gives its own ``send``, which
    queues replies for the ``sendmmsg`` at the end of the current read batch.
    Any other transport (tests' fakes) keeps ``write``.
    """
    if isinstance(transport, BatchedPort):
        return transport.send
    sock = getattr(transport, "socket", None)
    if not isinstance(transport, udp.Port) or sock is None or transport._connectedAddr:
        return transport.write
    sendto = sock.sendto

    def send(packet, address):
        try:
            sendto(packet, address)
        except ConnectionRefusedError:
            pass

    return send


def datagram_batch_sender(transport):
    """``send_many(items)`` for a UDP transport: ``[(packet, address), ...]`` at once.

    Returns how many datagrams could not be sent (OSError).  A ``BatchedPort``
    gives its own ``send_many``: one ``sendmmsg`` for the lot outside a read
    batch, the batch's queue inside one.  Any other transport (the plain
    ``udp.Port``, tests' fakes) sends them one by one with
    ``datagram_sender``'s function.
    """
    if isinstance(transport, BatchedPort):
        return transport.send_many
    send = datagram_sender(transport)

    def send_many(items):
        failed = 0
        for packet, address in items:
            try:
                send(packet, address)
            except OSError:
                failed += 1
        return failed

    return send_many


def _host_of_control(control):
    """The source address of a control channel (LoginProtocol.host), or None."""
    return getattr(control, "host", None)


def _host_of(session):
    return _host_of_control(session.control)


class LoginRefused(Exception):
    def __init__(self, code: ErrorCode, reason: str, outcome: str):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.outcome = outcome


class IControlChannel(Interface):  # pragma: no mutate block (zope interface: no code to mutate)
    """The TCP side of a session, as the registry drives it."""

    def send_data(payload):
        """Deliver application bytes reliably."""

    def session_ended(reason):
        """Tell the client the session ended and why, then close."""

    def detach():
        """The session resumed on another connection: close this one, end nothing."""

    def send_message(message, encoded=None):
        """Send one control message (a dict: room events); sealed, reliable.

        ``encoded``, when given, is ``wire.encode(message)``, made once by a
        caller that sends the same message to many (a room relay).
        """


@implementer(ISession)
class Session(DatagramChannel):
    """One logged-in player: identity, keys, UDP address and timers, in one object.

    The session is its own UDP channel (``DatagramChannel``: token, keys,
    counters, replay window) and keeps its rate-limit bucket as two numbers
    (``tokens``, ``stamp``), all in ``__slots__``: the hot path touches one
    object per datagram, and a session costs no instance dict.  Code that
    sets attributes of its own on a session still can (``__dict__`` is one
    of the slots, made on first use), at the cost of that dict.
    """

    __slots__ = ("registry", "user", "avatar", "logout", "control", "address", "started",
                 "last_seen", "last_sent", "ended", "ping_id", "ping_sent", "tokens", "stamp",
                 "__dict__")

    def __init__(self, registry, token, user, avatar, logout, control, keys, now):
        DatagramChannel.__init__(self, token, keys.udp_s2c, keys.udp_c2s)
        self.registry = registry
        self.user = user
        self.avatar = avatar
        self.logout = logout
        self.control = control
        self.address = None
        self.started = now
        self.last_seen = now
        self.last_sent = now
        self.ended = None
        # The server's keepalive PING still waiting for its PONG, and when it left.
        self.ping_id = None
        self.ping_sent = 0.0
        # The per-session datagram rate limit (limits.spend_token): a full bucket.
        self.tokens = registry.datagram_burst
        self.stamp = now

    @property
    def channel(self) -> DatagramChannel:
        """The session's UDP channel: the session itself."""
        return self

    def __repr__(self):
        return "<Session {} {} {}>".format(self.user, self.token.hex(), self.address)

    def send(self, kind: int, payload: bytes = b"") -> bool:
        address = self.address
        if address is None or self.ended:
            return False
        self.registry.transmit(self, self.seal(kind, payload), address)
        return True

    def send_datagram(self, payload: bytes) -> bool:
        return self.send(_DATA, payload)

    def send_message(self, payload: bytes) -> None:
        if not self.ended:
            self.control.send_data(payload)

    def kick(self) -> None:
        self.registry.end(self, "kicked")

    @property
    def suspended(self) -> bool:
        """True while the control connection is gone and the session waits for a resume."""
        return self.registry.resumes.is_suspended(self)

    def keepalive_ping(self, now: float) -> None:
        """Keep an idle session alive with a PING that also measures the RTT.

        The payload is a fresh random id; the client echoes it in a PONG and
        ``datagram_received`` records the round trip in ``stats.rtt``.  Only
        the latest ping counts, so a late or forged PONG records nothing.
        """
        ping_id = self.registry.random_bytes(8)
        if self.send(Kind.PING, ping_id):
            self.ping_id = ping_id
            self.ping_sent = now


class SessionRegistry:
    log = Logger()

    def __init__(
        self,
        clock,
        application=None,
        stats: "ServerStats | None" = None,
        session_timeout: float = 10.0,
        keepalive: float = 2.0,
        max_sessions: int = 10000,
        duplicate_login: str = "kick",
        random_bytes=os.urandom,
        datagram_rate: float = 0.0,
        datagram_burst: "float | None" = None,
        resume_grace: float = 0.0,
        max_sessions_per_address: int = 0,
        admission=LOCAL,
    ):
        self.clock = clock
        self.application = application if application is not None else EchoApplication()
        self.stats = stats if stats is not None else ServerStats()
        self.session_timeout = session_timeout
        self.keepalive = keepalive
        self.max_sessions = max_sessions
        self.duplicate_login = duplicate_login
        self.random_bytes = random_bytes
        # Authenticated datagrams a session may send per second (0: no limit).
        self.datagram_rate = datagram_rate
        self.datagram_burst = datagram_burst if datagram_burst is not None else max(datagram_rate, 1.0)
        self.by_token = {}
        self.by_user = {}
        self.by_control = {}
        # Sessions per source address (the control connection's ``host``), when
        # max_sessions_per_address is set (0: no limit, nothing counted).
        self.max_sessions_per_address = max_sessions_per_address
        self.by_host = {}
        # Every live session is filed once, under the time of its next timer check.
        self.timer_resolution = min(keepalive, session_timeout) / 20
        self.timers = DeadlineWheel(self.timer_resolution)
        # admission.ILoginAdmission: told of every session opened and ended (cluster membership).
        self.admission = admission
        # Set by the UDP game port once it listens: has write(packet, addr).
        self.transport = None
        from gamesession.server.resume import ResumeTable

        # Suspended sessions and resume tickets (--resume-grace; 0: off).
        self.resumes = ResumeTable(self, resume_grace)
        # Rooms with the default limits; the tap replaces it with the configured one.
        self.rooms = RoomManager(self)

    @property
    def transport(self):
        return self._transport

    @transport.setter
    def transport(self, transport):
        self._transport = transport
        self._send = None if transport is None else datagram_sender(transport)
        self._send_many = None if transport is None else datagram_batch_sender(transport)

    def __len__(self):
        return len(self.by_token)

    # -- opening and ending -------------------------------------------------

    def check_admission(self, user: str, host=None) -> None:
        """Raise LoginRefused if ``user`` (from ``host``) may not log in now."""
        old = self.by_user.get(user)
        if old is not None:
            if self.duplicate_login == "reject":
                raise LoginRefused(ErrorCode.ALREADY_LOGGED_IN,
                                   "user {} is already logged in".format(user),
                                   "already_logged_in")
        elif len(self.by_token) >= self.max_sessions:
            raise LoginRefused(ErrorCode.SERVER_FULL, "server full", "server_full")
        if self.max_sessions_per_address and host is not None:
            count = self.by_host.get(host, 0)
            if old is not None and _host_of(old) == host:
                count -= 1  # it replaces one of this address's own sessions
            if count >= self.max_sessions_per_address:
                raise LoginRefused(ErrorCode.SERVER_FULL,
                                   "too many sessions from your address", "address_full")

    def open(self, user, avatar, logout, control, keys) -> Session:
        """Register a session for a checked login, applying the duplicate rule."""
        host = _host_of_control(control) if self.max_sessions_per_address else None
        self.check_admission(user, host)
        old = self.by_user.get(user)
        if old is not None:
            self.end(old, "replaced")
        token = self._new_token()
        session = Session(self, token, user, avatar, logout, control, keys, self.clock.seconds())
        self.by_token[token] = session
        self.by_user[user] = session
        self.by_control[control] = session
        if host is not None:
            self.by_host[host] = self.by_host.get(host, 0) + 1
        self.timers.add(session, self._next_check(session))
        self.stats.logins["ok"] += 1
        return session

    def _uncount_host(self, host) -> None:
        if self.by_host:
            count = self.by_host.get(host, 0)
            if count > 1:
                self.by_host[host] = count - 1
            elif count == 1:
                del self.by_host[host]

    def _new_token(self) -> bytes:
        token = self.random_bytes(TOKEN_SIZE)
        while token in self.by_token:
            token = self.random_bytes(TOKEN_SIZE)
        return token

    def move(self, session: Session, control, keys):
        """Move a resumed session onto a new control connection; returns the old one.

        The session gets a new token and a UDP channel under the new
        handshake's keys (counters from 0, a fresh replay window); the old
        token stops working at once.  The UDP address stays until an
        authenticated datagram moves it, as for roaming.
        """
        old_control = session.control
        self.by_control.pop(old_control, None)
        del self.by_token[session.token]
        token = self._new_token()
        # The session is its own channel: new token, keys, counters from 0, fresh window.
        DatagramChannel.__init__(session, token, keys.udp_s2c, keys.udp_c2s)
        session.control = control
        session.ping_id = None
        session.last_seen = self.clock.seconds()
        self.by_token[token] = session
        self.by_control[control] = session
        if self.max_sessions_per_address:
            # --max-sessions-per-address: the session now counts for its new address.
            self._uncount_host(_host_of_control(old_control))
            host = _host_of_control(control)
            if host is not None:
                self.by_host[host] = self.by_host.get(host, 0) + 1
        return old_control

    def announce(self, session: Session) -> None:
        """Log a started session and tell the application (after the welcome went out)."""
        self.log.info("session started: user={user} token={token}",
                      user=loggable(session.user), token=session.token.hex(), event="session_started")
        self.notify_application("session_started", session)

    def end(self, session: Session, reason: str) -> None:
        """End a session once, for one of END_REASONS; idempotent."""
        if session.ended:
            return
        # Say goodbye over UDP while the channel still works.
        if reason not in ("disconnected", "logout") and session.address is not None:
            session.send(Kind.DISCONNECT, reason.encode("ascii"))
        session.ended = reason
        self.resumes.forget(session, reason)
        del self.by_token[session.token]
        if self.by_user.get(session.user) is session:
            del self.by_user[session.user]
        self.by_control.pop(session.control, None)
        self._uncount_host(_host_of(session))
        self.stats.logouts[reason] += 1
        self.rooms.session_ended(session, reason)
        now = self.clock.seconds()
        if reason in ("kicked", "replaced"):
            self.log.info("kicked: user={user} ({reason})", user=loggable(session.user), reason=reason,
                          event="kick", address=session.address)
        elif reason == "timeout":
            self.log.info("timed out: user={user} silent for {idle:.1f}s", user=loggable(session.user),
                          idle=now - session.last_seen, event="timeout", address=session.address)
        self.log.info("session ended: user={user} reason={reason} after {duration:.1f}s",
                      user=loggable(session.user), reason=reason, event="session_ended",
                      duration=now - session.started)
        if reason != "disconnected":
            session.control.session_ended(reason)
        try:
            session.logout()
        except Exception:
            self.log.failure("avatar logout failed for {user}", user=loggable(session.user))
        self.admission.ended(session, reason)
        self.notify_application("session_ended", session, reason)

    def control_lost(self, control) -> None:
        """The TCP connection of a session closed."""
        session = self.by_control.get(control)
        if session is not None and not self.resumes.suspend(session):
            self.end(session, "disconnected")

    def shutdown(self) -> None:
        self.rooms.shutdown()
        for session in list(self.by_token.values()):
            self.end(session, "shutdown")

    # -- UDP ------------------------------------------------------------------

    def transmit(self, session: Session, packet: bytes, address) -> None:
        send = self._send
        if send is None:
            return
        stats = self.stats
        stats.udp_out_packets += 1
        stats.udp_out_bytes += len(packet)
        session.last_sent = self.clock.seconds()
        try:
            send(packet, address)
        except OSError:
            stats.dropped["send_error"] += 1

    def sending_together(self):
        """A context in which the datagrams sent go out together at its end.

        On the batched game port: one ``sendmmsg`` per batch when the block
        ends (``BatchedPort.sending_together``); on any other transport the
        sends go one by one as usual.
        """
        transport = self._transport
        if isinstance(transport, BatchedPort):
            return transport.sending_together()
        return nullcontext()

    def fan_out(self, sessions, kind: int, payload: bytes) -> int:
        """Send one datagram of ``kind`` to each of ``sessions``; how many went out.

        What ``session.send(kind, payload)`` for each would do, in one pass:
        the plaintext is built once, each copy is sealed with its receiver's
        own key and next counter (``seal_plaintext``, as ``Session.seal``),
        and all copies go to the game port in one call (one ``sendmmsg``
        outside a read batch; the read batch's queue inside one).  Sessions
        with no UDP address yet, or ended, are skipped, as ``Session.send``
        skips them.  ValueError if ``payload`` is too long for a datagram.
        """
        plain = plaintext(kind, payload)
        return self._send_sealed([(session, plain) for session in sessions])

    def send_each(self, kind: int, payloads) -> int:
        """Send each session its own datagram: ``payloads`` is ``[(session, payload), ...]``.

        ``fan_out`` with a payload per receiver (an authoritative room's
        snapshots, each with its receiver's acks): sealed in one loop and
        handed to the port in one call.  ValueError, before anything is
        sealed, if a payload is too long for a datagram.
        """
        return self._send_sealed([(session, plaintext(kind, payload))
                                  for session, payload in payloads])

    def _send_sealed(self, plains) -> int:
        """Seal each ``(session, plaintext)`` for its session and send them all; how many went."""
        send_many = self._send_many
        if send_many is None:
            return sum(1 for s, _ in plains if s.address is not None and not s.ended)
        seal = seal_plaintext
        now = self.clock.seconds()
        items = []
        append = items.append
        size = 0
        for session, plain in plains:
            address = session.address
            if address is None or session.ended:
                continue
            packet = seal(session, plain)
            size += len(packet)
            append((packet, address))
            session.last_sent = now
        count = len(items)
        if not count:
            return 0
        stats = self.stats
        stats.udp_out_packets += count
        stats.udp_out_bytes += size
        failed = send_many(items)
        if failed:
            stats.dropped["send_error"] += failed
        return count

    def datagram_received(self, packet: bytes, address) -> None:
        """Authenticate and dispatch one datagram; drop anything else silently."""
        stats = self.stats
        size = len(packet)
        stats.udp_in_packets += 1
        stats.udp_in_bytes += size
        if size < MIN_PACKET:
            stats.dropped["short"] += 1
            return
        session = self.by_token.get(packet[:TOKEN_SIZE])
        if session is None:
            stats.dropped["unknown_token"] += 1
            return
        try:
            kind, payload, newest = session.open(
                _counter_at(packet, TOKEN_SIZE)[0], packet[HEADER_SIZE:])
        except Drop as drop:
            stats.dropped[drop.reason] += 1
            return
        now = self.clock.seconds()
        rate = self.datagram_rate
        if rate:
            session.tokens, taken = spend_token(session.tokens, session.stamp, now, rate,
                                                self.datagram_burst)
            session.stamp = now
            if not taken:
                stats.dropped["rate_limit"] += 1
                return
        session.last_seen = now
        if newest and address != session.address:
            if session.address is not None:
                stats.roams += 1
            session.address = address
        if kind == _DATA:
            # notify_application inlined: no getattr or argument tuple per packet.
            try:
                self.application.datagram_received(session, payload)
            except Exception:
                self.log.failure("application {method} failed", method="datagram_received")
        elif kind == _PING:
            session.send(_PONG, payload)
        elif kind == _PONG:
            if payload == session.ping_id:
                session.ping_id = None
                stats.rtt.observe(session.last_seen - session.ping_sent)
        elif kind == _ROOM_SEND:
            self.rooms.datagram_received(session, payload)
        elif kind == _DISCONNECT:
            self.end(session, "logout")
        elif kind == _ROOM_RELAY:
            self.rooms.stray_datagram(session, payload)
        # KEEPALIVE only refreshed last_seen.

    # -- timers -----------------------------------------------------------------

    def _next_check(self, session) -> float:
        return min(session.last_seen + self.session_timeout,
                   session.last_sent + self.keepalive) - _EARLY

    def sweep(self, limit: "int | None" = None) -> bool:
        """End silent sessions and send keepalives (measuring PINGs) to idle ones.

        Only the sessions filed as due now are looked at (``self.timers``), not
        every session.  Without ``limit`` all due work is done; with one, at
        most ``limit`` sessions are looked at and at most a fair share of
        keepalives is sent (twice the average rate over the keepalive
        interval), so a crowd of sessions due at once is spread over several
        steps instead of stalling the reactor.  Returns True when due work is
        left for another step.
        """
        # The keepalives (and goodbyes) of one step leave together: one sendmmsg per batch.
        with self.sending_together():
            return self._sweep(limit)

    def _sweep(self, limit):
        now = self.clock.seconds()
        timers = self.timers
        timeout = self.session_timeout
        keepalive = self.keepalive
        if limit is None:
            batch_size, keepalives = 4096, None
        else:
            batch_size = limit
            keepalives = max(64, int(2 * len(self.by_token) * self.timer_resolution / keepalive) + 1)
        while True:
            batch = timers.due(now, batch_size)
            if not batch:
                return False
            for session in batch:
                if session.ended:
                    continue  # dropped from the timers
                if now - session.last_seen >= timeout:
                    self.end(session, "timeout")
                    continue
                if now - session.last_sent >= keepalive:
                    if keepalives is not None and keepalives <= 0:
                        # Over this step's share: the next step sends it.
                        timers.add(session, now, now)
                        continue
                    session.keepalive_ping(now)
                    if keepalives is not None:
                        keepalives -= 1
                    if session.address is None:
                        # Nowhere to send yet: look again in a while.
                        timers.add(session, min(session.last_seen + timeout, now + keepalive / 4),
                                   now)
                        continue
                timers.add(session, self._next_check(session), now)
            if limit is not None:
                return timers.pending(now)

    def notify_application(self, method: str, *args) -> None:
        try:
            getattr(self.application, method)(*args)
        except Exception:
            self.log.failure("application {method} failed", method=method)
