"""The TCP login service: handshake, cred login, then the session's control channel.

A thin protocol over the sans-I/O pieces (``wire``, ``handshake``,
``registry``).  States: ``hello`` (expects a clear hello) -> ``login``
(expects a sealed login) -> ``checking`` (cred is deciding) -> ``active``
(sealed logout/data) -> ``closed``.  Bad input gets an error with a code and
a closed connection; nothing raises out of ``frameReceived``.

Limits (``limits.Limits``, README.md "Limits"): connections beyond the
pending-login caps are aborted before any byte; an address with too many
failed logins gets ``TOO_MANY_ATTEMPTS`` until its backoff passes; a client
that stops reading is aborted once ``max_send_buffer`` bytes queue beyond the
transport's own buffer (the protocol is the transport's streaming producer,
so ``pauseProducing`` says when the buffer is full).
"""

import math

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginDenied, UnauthorizedLogin
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from gamesession.protocol import resume as resume_protocol
from gamesession.protocol import transfer, wire
from gamesession.server.accounts import IPlayer, ITransferTicket, TransferTicket
from gamesession.framing import FRAMINGS
from gamesession.protocol.handshake import BadBox, HandshakeError, StreamCipher, server_respond
from gamesession.server.limits import MessageMeter
from gamesession.server.registry import IControlChannel, LoginRefused
from gamesession.protocol.wire import ErrorCode, ProtocolError
from gamesession.protocol.rooms import EVENT_TYPES, REQUEST_TYPES, join as room_join

ROOM_REQUESTS = frozenset(REQUEST_TYPES)
ROOM_TYPES = ROOM_REQUESTS | frozenset(EVENT_TYPES)

KNOWN_TYPES = frozenset(["hello", "challenge", "login", "welcome", "logout", "data",
                         "session_end", "error", "sealed", "resume", "resumed", "ping", "pong",
                         "ticket_login"]) | ROOM_TYPES


def seconds_text(wait: float) -> str:
    """A wait as a person reads it, rounded up to whole seconds: "1 second", "3 seconds"."""
    seconds = max(1, int(math.ceil(wait)))
    return "{} second{}".format(seconds, "" if seconds == 1 else "s")


@implementer(IControlChannel, IPushProducer)
class LoginProtocol:
    """Mixed with a framing from ``framing.FRAMINGS`` by ``LoginFactory``."""

    log = Logger()
    state = "hello"
    session = None
    sender = None
    receiver = None
    pending = False
    # The one deadline of a pending connection: the hello's first (limits.hello_timeout),
    # then the whole login's (factory.login_timeout, counted from the connection).
    timeout_call = None
    hello_deadline = False
    connected_at = 0.0
    # After login: limits.MessageMeter, and the call that resumes reading when throttled.
    meter = None
    throttle_call = None
    user = None
    host = None
    # A ticket_login (protocol.transfer.TicketLogin) and its credentials, else None.
    transfer = None
    credentials = None
    # Registered as the transport's producer; send_paused while its write buffer is
    # full.  (Not ``paused``: the framings' receivers stop reading when that is set.)
    producing = False
    send_paused = False
    # Bytes sent while send_paused; past limits.max_send_buffer the connection is aborted.
    backlog = 0
    aborted = False

    # -- connection -------------------------------------------------------------

    def connectionMade(self):
        factory = self.factory
        gate = factory.gate
        if gate is not None and not gate.allows(self.transport.getPeer().host):
            self.state = "closed"
            self.transport.abortConnection()
            return
        stats = factory.registry.stats
        limits = factory.limits
        self.host = getattr(self.transport.getPeer(), "host", None)
        if limits is not None:
            pending = limits.pending
            refused = pending.admit(self.host, self)
            if refused == "pending_total":
                # Full: push out the longest-idle connection rather than refuse
                # the newest, so idlers cannot hold the gate shut.
                victim = pending.evictable()
                if victim is not None:
                    victim._evict()
                    refused = pending.admit(self.host, self)
            if refused is not None:
                stats.limited[refused] += 1
                self.state = "closed"
                self.transport.abortConnection()
                return
        stats.tcp_connections += 1
        stats.tcp_pending_login += 1
        self.pending = True
        self.transport.registerProducer(self, True)
        self.producing = True
        # One DelayedCall per connection (they are most of what a burst of
        # accepts allocates), moved from the hello's deadline to the login's.
        clock = factory.clock
        self.connected_at = clock.seconds()
        first = factory.login_timeout
        if limits is not None and limits.hello_timeout < first:
            first = limits.hello_timeout
            self.hello_deadline = True
        self.timeout_call = clock.callLater(first, self._timed_out)

    @property
    def evictable(self) -> bool:
        """May this pending connection be pushed out for a newcomer (not being checked)?"""
        return self.state in ("hello", "login")

    def _evict(self) -> None:
        self.factory.registry.stats.limited["pending_evicted"] += 1
        self.state = "closed"
        self._login_settled()
        self.transport.abortConnection()

    def connectionLost(self, reason=None):
        self.state = "closed"
        self._login_settled()
        if self.throttle_call is not None and self.throttle_call.active():
            self.throttle_call.cancel()
        self.throttle_call = None
        if self.session is not None:
            self.factory.registry.control_lost(self)

    def _login_settled(self):
        if self.timeout_call is not None and self.timeout_call.active():
            self.timeout_call.cancel()
        self.timeout_call = None
        if self.pending:
            self.pending = False
            self.factory.registry.stats.tcp_pending_login -= 1
            if self.factory.limits is not None:
                self.factory.limits.pending.release(self.host, self)

    def _hello_settled(self):
        """The hello came: the deadline becomes the whole login's."""
        if self.hello_deadline:
            self.hello_deadline = False
            call = self.timeout_call
            if call is not None and call.active():
                left = self.connected_at + self.factory.login_timeout - self.factory.clock.seconds()
                call.reset(max(left, 0.0))

    def _timed_out(self):
        self.timeout_call = None
        if self.hello_deadline:
            self.factory.registry.stats.limited["hello_timeout"] += 1
            self.fail(ErrorCode.LOGIN_TIMEOUT, "no hello within {:g} seconds"
                      .format(self.factory.limits.hello_timeout))
        else:
            self.fail(ErrorCode.LOGIN_TIMEOUT,
                      "login not completed within {:g} seconds".format(self.factory.login_timeout))

    # -- frames -----------------------------------------------------------------

    def frameReceived(self, frame: bytes):
        if self.state == "closed":
            return
        if self.meter is not None:
            self._meter(len(frame))
        try:
            message = wire.decode(frame)
            if self.receiver is None:
                self._clear_message(message)
            else:
                self._sealed_message(message)
        except ProtocolError as e:
            self.fail(e.code, e.reason)
        except Exception:
            self.log.failure("unexpected error handling a frame from {peer}",
                             peer=self.transport.getPeer())
            self.fail(ErrorCode.INTERNAL, "internal error")

    def _meter(self, size: int) -> None:
        """Book a frame on the session's message rates; stop reading while in debt."""
        wait = self.meter.charge(self.factory.clock.seconds(), size)
        if wait <= 0 or self.throttle_call is not None:
            return
        self.factory.registry.stats.limited["message_rate"] += 1
        # The framings deliver no further frame while ``paused``; the
        # transport stops reading, so the client's own buffers fill.
        self.paused = True
        self.transport.pauseProducing()
        self.throttle_call = self.factory.clock.callLater(wait, self._resume_reading)

    def _resume_reading(self) -> None:
        self.throttle_call = None
        if self.state == "closed":
            return
        self.paused = False
        self.transport.resumeProducing()
        self.dataReceived(b"")  # the frames that waited in the framing's buffer

    def frameTooLong(self):
        self.fail(ErrorCode.FRAME_TOO_LONG, "frame longer than {} bytes".format(wire.MAX_FRAME))

    def send_message(self, message: dict, encoded: "bytes | None" = None) -> None:
        if self.state == "closed" and message.get("type") not in ("error", "session_end"):
            return
        frame = wire.encode(message) if encoded is None else encoded
        if self.sender is not None:
            frame = wire.encode(wire.sealed(self.sender.seal(frame)))
        self.sendFrame(frame)
        if self.send_paused:
            self._queued(len(frame))

    # -- IPushProducer: the transport tells us when its write buffer is full ---------

    def pauseProducing(self):
        self.send_paused = True

    def resumeProducing(self):
        self.send_paused = False
        self.backlog = 0

    def stopProducing(self):
        # The transport is going away and forgets us.
        self.send_paused = False
        self.producing = False

    def _queued(self, size: int) -> None:
        limits = self.factory.limits
        self.backlog += size
        if limits is None or self.aborted or self.backlog <= limits.max_send_buffer:
            return
        self.factory.registry.stats.limited["send_buffer"] += 1
        self.log.info("aborting {peer}: it does not read; {size} bytes queued for it",
                      size=self.backlog, peer=self.transport.getPeer(),
                      event="limit", limit="send_buffer")
        self.aborted = True
        self.state = "closed"
        self._login_settled()
        self._end_session()
        self.transport.abortConnection()

    def _close(self) -> None:
        """Close after the queued bytes left (a registered producer would hold it open)."""
        if self.producing:
            self.producing = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    def fail(self, code: ErrorCode, reason: str, message: "dict | None" = None) -> None:
        """Answer bad input with an error (``message``, if given) and close; the session (if any) ends."""
        if self.state == "closed":
            return
        self.factory.registry.stats.protocol_errors[code.name.lower()] += 1
        self.log.debug("closing {peer}: {code} {reason}", peer=self.transport.getPeer(),
                       code=int(code), reason=reason)
        self.send_message(message or wire.error(code, reason))
        self.state = "closed"
        self._login_settled()
        self._end_session()
        self._close()

    def _end_session(self) -> None:
        # Now, not at connectionLost: a peer that does not read would keep a
        # closing connection (and its session) around for as long as it likes.
        if self.session is not None and not self.session.ended:
            self.factory.registry.end(self.session, "disconnected")

    def _clear_message(self, message: dict):
        kind = message["type"]
        if kind != "hello":
            raise self._misplaced(kind, "a hello")
        wire.version_field(message)
        client_key = wire.bytes_field(message, "client_key", size=32)
        self._hello_settled()
        limits = self.factory.limits
        if limits is not None and limits.hellos is not None:
            refused = limits.hellos.allow(self.host, self.factory.clock.seconds())
            if refused is not None:
                # Before the X25519 work, and no more bytes than the hello.
                self.factory.registry.stats.limited[refused] += 1
                raise ProtocolError(ErrorCode.TOO_MANY_ATTEMPTS, "too many handshakes; slow down")
        try:
            reply = server_respond(self.factory.server_key, client_key)
        except HandshakeError as e:
            raise ProtocolError(ErrorCode.BAD_FIELD, "client_key: {}".format(e))
        self.send_message({
            "type": "challenge",
            "version": wire.PROTOCOL_VERSION,
            "server_key": wire.b64(reply.server_ephemeral),
            "confirm": wire.b64(reply.confirm),
        })
        self.keys = reply.keys
        # What a resume proof covers (protocol.resume.proof): ce.pub, se.pub, ss.pub.
        self.publics = (client_key, reply.server_ephemeral, self.factory.server_public)
        self.sender = StreamCipher(reply.keys.tcp_s2c, 1)
        self.receiver = StreamCipher(reply.keys.tcp_c2s, 0)
        self.state = "login"

    def _sealed_message(self, envelope: dict):
        box = wire.unseal_envelope(envelope)
        try:
            plain = self.receiver.open(box)
        except BadBox:
            raise ProtocolError(ErrorCode.BAD_BOX, "sealed frame did not open")
        message = wire.decode(plain)
        kind = message["type"]
        if self.state == "login" and kind == "login":
            self._login(message)
        elif self.state == "login" and kind == "ticket_login":
            self._ticket_login(message)
        elif self.state == "login" and kind == "resume":
            self._resume(message)
        elif self.state == "active":
            self.session.last_seen = self.factory.clock.seconds()
            if kind == "data":
                payload = wire.bytes_field(message, "data", max_size=wire.MAX_DATA)
                self.factory.registry.notify_application("message_received", self.session, payload)
            elif kind in ROOM_REQUESTS:
                self.factory.registry.rooms.request(self.session, message)
            elif kind == "logout":
                self.factory.registry.end(self.session, "logout")
            elif kind == "ping":
                # The client's check that this connection still carries frames.
                self.send_message({"type": "pong", "id": wire.int_field(message, "id", 0, 2**31 - 1)})
            elif kind == "login":
                raise ProtocolError(ErrorCode.UNEXPECTED, "already logged in on this connection")
            else:
                raise self._misplaced(kind, "logout, data or a room request")
        else:
            raise self._misplaced(kind, "a login" if self.state == "login" else "nothing until the login is decided")

    @staticmethod
    def _misplaced(kind: str, expected: str) -> ProtocolError:
        if kind not in KNOWN_TYPES:
            return ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type {!r}".format(kind[:40]))
        return ProtocolError(ErrorCode.UNEXPECTED, "unexpected {}; expected {}".format(kind, expected))

    # -- login --------------------------------------------------------------------

    def _backoff(self) -> "LoginRefused | None":
        """TOO_MANY_ATTEMPTS while this address must wait after failed logins or resumes."""
        limits = self.factory.limits
        if limits is not None:
            wait = limits.attempts.wait(self.host, self.factory.clock.seconds())
            if wait > 0:
                return LoginRefused(
                    ErrorCode.TOO_MANY_ATTEMPTS,
                    "too many failed logins from your address; try again in {}"
                    .format(seconds_text(wait)), "too_many_attempts")
        return None

    def _ticket_login(self, message: dict):
        # A transfer ticket from another node in place of a password (cluster.rooms).
        self.transfer = transfer.parse_ticket_login(message)
        refused = self._backoff()
        if refused is not None:
            return self._refused(refused)
        if ITransferTicket not in self.factory.portal.listCredentialsInterfaces():
            return self._refused(LoginRefused(
                ErrorCode.BAD_TICKET, "this server is not in a cluster: it takes no transfer tickets",
                "bad_ticket"))
        try:  # room for one more session (no user named: it tells nothing), before the ticket is spent
            self.factory.registry.check_admission(None, self.host)
        except LoginRefused as refused:
            return self._refused(refused)
        self.state = "checking"
        self.credentials = TransferTicket(self.transfer.ticket)
        d = self.factory.portal.login(self.credentials, None, IPlayer)
        d.addCallbacks(self._authenticated, self._denied)
        d.addErrback(self._login_crashed)

    def _login(self, message: dict):
        user = wire.text_field(message, "user", wire.MAX_USER)
        password = wire.text_field(message, "password", wire.MAX_PASSWORD, allow_empty=True)
        refused = self._backoff()
        if refused is not None:
            self.user = user
            return self._refused(refused)
        # Admission (duplicate user, server full) is decided by registry.open
        # after the password: checked first, "already logged in" (409) would
        # tell anyone who is online.
        self.state = "checking"
        self.user = user
        d = self.factory.portal.login(
            UsernamePassword(user, password), None, IPlayer)
        d.addCallbacks(self._authenticated, self._denied)
        d.addErrback(self._login_crashed)

    def _authenticated(self, result):
        _, avatar, logout = result
        if self.state != "checking":
            logout()
            return
        if self.credentials is not None:
            self.user = self.credentials.redeemed.user
        # admission.ILoginAdmission: cluster-wide rules; a single node answers at once.
        d = self.factory.registry.admission.admit(self.user, moving=self.credentials is not None)
        d.addCallbacks(self._admitted, self._not_admitted,
                       callbackArgs=(avatar, logout), errbackArgs=(logout,))
        return d

    def _not_admitted(self, failure, logout):
        failure.trap(LoginRefused)
        logout()
        if self.state == "checking":
            self._refused(failure.value)

    def _admitted(self, claim, avatar, logout):
        registry = self.factory.registry
        if self.state != "checking":
            logout()
            registry.admission.abandoned(self.user, claim)
            return
        try:
            self.session = registry.open(self.user, avatar, logout, self, self.keys)
        except LoginRefused as refused:
            logout()
            registry.admission.abandoned(self.user, claim)
            return self._refused(refused)
        registry.admission.opened(self.session, claim)
        self.keys = None  # the ciphers and the session hold what they need of them
        self._login_settled()
        limits = self.factory.limits
        if limits is not None:
            limits.attempts.succeeded(self.host, self.user)
            if limits.message_rate or limits.message_bytes_rate:
                self.meter = MessageMeter(limits.message_rate, limits.message_bytes_rate,
                                          self.factory.clock.seconds())
        self.state = "active"
        self.log.info("login ok: user={user} from {peer}", user=wire.loggable(self.user),
                      peer=self.transport.getPeer().host, event="login", outcome="ok")
        self.send_message({
            "type": "welcome",
            "user": self.user,
            "token": wire.b64(self.session.token),
            "udp_port": self.factory.public_udp_port,
            "session_timeout": registry.session_timeout,
            "keepalive": registry.keepalive,
            **resume_protocol.ticket_fields(registry.resumes.issue(self.session)),
        })
        registry.announce(self.session)
        if self.credentials is not None:  # seated as by a room_join of the ticket's room
            registry.rooms.request(self.session, room_join(
                self.transfer.rid, self.credentials.redeemed.room_id, self.transfer.options))

    # -- resume (server/resume.py) ------------------------------------------------------

    def _resume(self, message: dict):
        resume_id, proof = resume_protocol.parse_resume(message)
        registry = self.factory.registry
        limits = self.factory.limits
        refused = self._backoff()
        if refused is None:
            try:
                resumption = registry.resumes.resume(resume_id, proof, self.publics, self, self.keys)
            except LoginRefused as e:
                refused = e
                if limits is not None:
                    limits.attempts.failed(self.host, self.factory.clock.seconds())
        if refused is not None:
            registry.stats.resumes[refused.outcome] += 1
            self.log.info("resume refused from {peer}: {reason}", peer=self.transport.getPeer().host,
                          reason=refused.reason, event="resume", outcome=refused.outcome)
            return self.fail(refused.code, refused.reason, getattr(refused, "message", None))
        session = self.session = resumption.session
        self.keys = None  # the ciphers and the session hold what they need of them
        self.user = session.user
        self._login_settled()
        if limits is not None:
            limits.attempts.succeeded(self.host, session.user)
        self.state = "active"
        self.send_message({
            "type": "resumed",
            "user": session.user,
            "token": wire.b64(session.token),
            "udp_port": self.factory.public_udp_port,
            "session_timeout": registry.session_timeout,
            "keepalive": registry.keepalive,
            **resume_protocol.ticket_fields(resumption.ticket),
        })
        registry.resumes.deliver(resumption, self)
        registry.resumes.announce(resumption, self.transport.getPeer().host)

    def _refused(self, refused: LoginRefused):
        self.factory.registry.stats.logins[refused.outcome] += 1
        self.log.info("login refused: user={user} from {peer}: {reason}",
                      user=wire.loggable(self.user or ""),
                      peer=self.transport.getPeer().host, reason=wire.loggable(refused.reason),
                      event="login", outcome=refused.outcome)
        self.fail(refused.code, refused.reason)

    def _denied(self, failure):
        failure.trap(UnauthorizedLogin, LoginDenied, LoginRefused)
        refused = failure.value if failure.check(LoginRefused) else None
        if refused is None:
            if self.factory.limits is not None:
                self.factory.limits.attempts.failed(self.host, self.factory.clock.seconds(),
                                                    self.user)
            refused = getattr(failure.value, "refusal", None) or LoginRefused(
                ErrorCode.AUTH_FAILED, "authentication failed", "auth_failed")
        if self.state == "checking":
            self._refused(refused)

    def _login_crashed(self, failure):
        self.log.failure("login check failed", failure)
        self.factory.registry.stats.logins["error"] += 1
        self.fail(ErrorCode.INTERNAL, "internal error")

    # -- IControlChannel ------------------------------------------------------------

    def send_data(self, payload: bytes) -> None:
        if len(payload) > wire.MAX_DATA:
            raise ValueError("message payload over {} bytes".format(wire.MAX_DATA))
        if self.state == "active":
            self.send_message({"type": "data", "data": wire.b64(payload)})

    def session_ended(self, reason: str) -> None:
        if self.state == "closed":
            return
        self.send_message({"type": "session_end", "reason": reason})
        self.state = "closed"
        self._close()

    def detach(self) -> None:
        # The client resumed elsewhere: this connection is presumed dead (it may
        # be black-holed, so do not wait for its buffer to drain).
        self.session = None
        self.state = "closed"
        self.transport.abortConnection()


class LoginFactory(Factory):
    """Builds login protocols in the chosen framing; holds what they share."""

    def __init__(self, portal, registry, server_key, public_udp_port, clock,
                 login_timeout=10.0, framing="int16", gate=None, limits=None):
        self.portal = portal
        self.registry = registry
        self.server_key = server_key
        self.public_udp_port = public_udp_port
        self.clock = clock
        self.login_timeout = login_timeout
        self.gate = gate
        self.server_public = bytes(server_key.public_key)
        # limits.Limits, or None for none (tests and embedding; twistd always sets them).
        self.limits = limits
        self.protocol = type("LoginProtocol_" + framing, (LoginProtocol, FRAMINGS[framing]), {})
