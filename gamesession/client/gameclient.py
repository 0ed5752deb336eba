"""The Twisted client: log in over TCP, then talk over the session's UDP channel.

    client = await GameClient.connect(
        reactor, "127.0.0.1", 7000, "SERVER_KEY_AS_PRINTED_BY_PUBKEY=", "alice", "pw",
        on_message=handle_message, on_datagram=handle_datagram, on_closed=handle_end)
    rtt = await client.ping()
    client.send_datagram(b"state")
    await client.logout()

Events are never lost: what arrives before a callback is set waits for it
(see ``gamesession.client.events``).  All protocol logic is in
``clientcore.ClientCore``; this module moves bytes and runs the timers
(keepalive, timeout) on the injected reactor.

When the control connection drops (or stops carrying frames: the client sends
a TCP ``ping`` when it has heard nothing for ``keepalive`` seconds and gives
the connection up when the ``pong`` is ``keepalive`` seconds late) and the
server gave a resume ticket, the client resumes by itself (``reconnect.py``):
UDP goes on meanwhile, ``send_message`` queues, and ``on_reconnecting``,
``on_reconnected`` and ``on_resume_failed`` tell the game.  Messages sent
just before a drop may be lost (TCP does not say which arrived).
"""

import ipaddress
import os

from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger

from gamesession.client import reconnect as reconnecting
from gamesession.client.events import EventSlot
from gamesession.client.move import Moves
from gamesession.client.room import RoomOperations
from gamesession.keys import server_key_bytes
from gamesession.protocol.clientcore import (
    MAX_DATAGRAM, MAX_MESSAGE, ClientCore, LoginFailed, MessageData, Pong, Resumed, SessionEnded,
    Unsent, Welcome)
from gamesession.protocol.datagram import Drop, Kind
from gamesession.framing import FRAMINGS
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.protocol.wire import ProtocolError


#: Control frames (messages, requests) that may wait while the client reconnects.
MAX_QUEUED_FRAMES = 1024


class SessionClosed(Exception):
    """The session has ended (``reason`` says how); nothing more can be sent."""

    def __init__(self, reason: str):
        super().__init__("session ended ({})".format(reason))
        self.reason = reason


class FramingMismatch(error.ConnectionClosed):
    """The server answered bytes that never formed a frame in this client's framing."""


class _ControlProtocol:
    """Mixed with a framing; forwards frames to the GameClient."""

    client = None
    bytes_received = 0
    frames_received = 0

    def connectionMade(self):
        self.sendFrame(self.client.core.hello())

    def dataReceived(self, data):
        self.bytes_received += len(data)
        super().dataReceived(data)

    def frameReceived(self, frame):
        self.frames_received += 1
        if self.client.control is self:  # not a connection a resume replaced
            self.client._frame_received(frame)
        else:  # held while a move to another node is under way (client.move)
            self.client._retired_control(self, frame)

    def frameTooLong(self):
        if self.client.control is self:
            self.client._fail(ProtocolError(413, "server sent an oversized frame"))

    def connectionLost(self, reason):
        if self.client.control is self:
            self.client._control_lost(reason, self.bytes_received and not self.frames_received)
        else:
            self.client._retired_control(self)  # (client.move forgets it)


class _DatagramProtocol(DatagramProtocol):
    def __init__(self, client):
        self.client = client

    def datagramReceived(self, datagram, addr):
        self.client._datagram_received(datagram, addr)


class GameClient(RoomOperations, Moves):
    """One player's session with a gamesession server, on a Twisted reactor.

    Make one with ``await GameClient.connect(...)``.  Then ``send_message``
    (TCP: reliable, in order), ``send_datagram`` (UDP: unreliable, fresh),
    ``ping()``, ``logout()``; rooms: ``create_room``, ``join_room``,
    ``join_or_create``, ``list_rooms`` (each returns a ``Room``, whose
    ``members``, ``send_message``, ``send_datagram``, ``leave`` and event
    callbacks are the multiplayer part); incoming messages, datagrams and the end of the
    session go to the ``on_message``, ``on_datagram`` and ``on_closed``
    callbacks (given to ``connect`` or set later: events wait until then).
    After the session ended, sending or pinging raises SessionClosed.

    Attributes: ``welcome`` (the server's Welcome: user, udp_port, timers),
    ``server_udp`` (where datagrams go), ``end_reason`` (None while the
    session lives), ``dropped`` (datagrams that failed authentication).

    The client resumes by itself after a dropped control connection when the
    server gave a resume ticket (``--resume-grace``): ``reconnecting`` is True
    meanwhile, ``resumed`` counts resumes and ``relogins`` the fallback logins
    after a refused resume.  ``before_reconnect()`` runs (and is awaited)
    before each reconnect attempt: ``gamesession ping --knock`` knocks there.
    """

    #: The largest ``send_message`` payload in bytes (larger raises PayloadTooLarge).
    MAX_MESSAGE = MAX_MESSAGE
    #: The largest ``send_datagram`` payload in bytes (keep to 1200 or less to avoid
    #: IP fragmentation).
    MAX_DATAGRAM = MAX_DATAGRAM

    on_message = EventSlot(
        "callable(payload: bytes): an application message from the server (TCP).\n\n"
        "Messages that arrive before it is set wait and are delivered, in order, when it is.")
    on_datagram = EventSlot(
        "callable(payload: bytes): an application datagram from the server (UDP).\n\n"
        "Datagrams that arrive before it is set wait and are delivered when it is.")
    on_closed = EventSlot(
        "callable(reason: str): the session ended (logout, kicked, timeout, shutdown...).\n\n"
        "Called once; if the session ended before it was set, it is called when set.")
    on_reconnecting = EventSlot(
        "callable(reason: str): the control connection dropped; the client is resuming "
        "(show \"reconnecting...\"). UDP goes on meanwhile.")
    on_reconnected = EventSlot(
        "callable(resumed: bool): back: True when the session resumed, False when the "
        "resume was refused and the client logged in again (a new session).")
    on_resume_failed = EventSlot(
        "callable(reason: str): the client gave up resuming; on_closed follows.")

    # Reconnect policy (reconnect.py): first delay, longest delay, in seconds.
    reconnect_initial = reconnecting.DEFAULT_INITIAL
    reconnect_maximum = reconnecting.DEFAULT_MAXIMUM

    log = Logger()

    def __init__(self, reactor, core: ClientCore, framing: str = "int16", endpoint=None,
                 timeout: float = 10.0, auto_resume: bool = True, fallback_login: bool = True,
                 **handlers):
        """Prefer ``GameClient.connect``; this makes a client that has not connected."""
        self.reactor = reactor
        self.core = core
        self.framing = framing
        # How to reach the login port again (a resume opens a new connection).
        self.endpoint = endpoint
        self.timeout = timeout
        self.auto_resume = auto_resume
        self.fallback_login = fallback_login
        self.resumed = 0
        self.relogins = 0
        self.reconnecting = False
        self.logging_out = False
        self.before_reconnect = None
        self._outbox = []
        self._waiting = None
        self._tcp_heard = 0.0
        self._tcp_ping_sent = None
        self._tcp_ping_id = 0
        self._silent = None  # why _check_control gave the connection up
        self.control = None
        self.udp = None
        self.server_udp = None
        self.welcome = None
        self.closed = defer.Deferred()
        self.end_reason = None
        self._logged_in = defer.Deferred()
        self._pings = {}
        self._timer = None
        self.last_heard = self.last_sent = 0.0
        self.dropped = 0
        self._init_rooms()
        for name, handler in handlers.items():
            if not isinstance(getattr(type(self), name, None), EventSlot):
                raise TypeError("unknown event callback {!r}".format(name))
            setattr(self, name, handler)

    def _emit(self, name: str, *args) -> None:
        # A failing callback is the game's bug: log it, and keep the session's
        # own bookkeeping (and the other callbacks) going.
        try:
            getattr(type(self), name).queue(self).emit(*args)
        except Exception:
            self.log.failure("the {name} callback failed", name=name)

    @classmethod
    async def connect(cls, reactor, host, port, server_key, user, password="",
                      framing="int16", udp_host=None, udp_port=None, timeout=10.0,
                      on_message=None, on_datagram=None, on_closed=None,
                      auto_resume=True, fallback_login=True) -> "GameClient":
        """Log in to ``host:port`` and open the session's UDP channel.

        ``server_key`` is the server's public key as ``gamesession pubkey``
        prints it (base64 ``str``), or its 32 raw bytes, or a PublicKey; a
        malformed one raises KeyFileError (a ValueError).  ``host`` may be a
        name, an IPv4 or an IPv6 address; UDP goes to the same address (or
        ``udp_host``) and to the port the server advertises (or ``udp_port``).
        ``framing`` is ``"int16"`` or ``"line"``, as the server's ``--framing``.
        ``on_message``, ``on_datagram`` and ``on_closed`` are the callbacks
        (see the attributes of the same names); none is required.
        With ``auto_resume`` the client resumes by itself after a dropped
        control connection; with ``fallback_login`` it logs in again (with
        ``user`` and ``password``) when the server refuses the resume.

        Raises LoginFailed (wrong password, server full...: ``.code``),
        ServerKeyMismatch (the server did not prove ``server_key``),
        FramingMismatch, twisted ``ConnectError``/``ConnectionClosed`` or
        ``defer.TimeoutError`` after ``timeout`` seconds.
        """
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
        client = cls(reactor, ClientCore(server_key_bytes(server_key), user, password), framing,
                     endpoint=endpoint, timeout=timeout, auto_resume=auto_resume,
                     fallback_login=fallback_login,
                     on_message=on_message, on_datagram=on_datagram, on_closed=on_closed)
        await client._login(endpoint, udp_host, udp_port, timeout)
        return client

    async def _login(self, endpoint, udp_host, udp_port, timeout):
        self._logged_in.addTimeout(timeout, self.reactor)
        try:
            self.control = await endpoint.connect(self._control_factory())
            welcome = await self._logged_in
        except defer.TimeoutError:
            self._abort()
            raise defer.TimeoutError("login timed out after {:g} seconds".format(timeout))
        except BaseException:
            self._abort()
            raise
        self._tcp_heard = self.reactor.seconds()
        peer = self.control.transport.getPeer()
        udp_ip = udp_host or peer.host
        if udp_host is not None:
            try:
                ipaddress.ip_address(udp_host)
            except ValueError:
                udp_ip = await self.reactor.resolve(udp_host)
        self.server_udp = (udp_ip, udp_port or welcome.udp_port)
        # The UDP socket follows the server's address family.
        interface = "::" if ipaddress.ip_address(udp_ip).version == 6 else ""
        self.udp = self.reactor.listenUDP(0, _DatagramProtocol(self), interface=interface)
        self.last_heard = self.reactor.seconds()
        self._send(Kind.KEEPALIVE)  # the first authenticated packet: tells the server our address
        self._timer = self.reactor.callLater(self._tick_interval(), self._tick)

    def _control_factory(self):
        protocol_class = type("ClientControl", (_ControlProtocol, FRAMINGS[self.framing]), {})
        factory = Factory.forProtocol(protocol_class)
        factory.buildProtocol = self._build_control(factory.buildProtocol)
        return factory

    # -- resume (reconnect.py drives these) ------------------------------------------

    async def _open_control(self, resume_session: bool, timeout: float):
        """One reconnect attempt: a new connection, a fresh handshake, resume or login."""
        self.core.reconnect(resume_session)
        waiting = self._waiting = defer.Deferred()
        waiting.addTimeout(timeout, self.reactor)
        control = None
        try:
            control = self.control = await self.endpoint.connect(self._control_factory())
            await waiting
        except BaseException:
            if control is not None and control.transport.connected:
                control.transport.abortConnection()
            self.control = None
            raise
        finally:
            self._waiting = None
            if not waiting.called:
                waiting.cancel()
            waiting.addErrback(lambda _: None)  # awaited above, or abandoned
        self._tcp_heard = self.reactor.seconds()
        self._tcp_ping_sent = None

    def _reconnected(self, resumed: bool) -> None:
        self.reconnecting = False
        self.welcome = self.core.welcome
        self.last_heard = self.reactor.seconds()
        self._send(Kind.KEEPALIVE)  # tells the server our address under the new token
        outbox, self._outbox = self._outbox, []
        if not resumed:
            # A new session: the old one left its rooms on the server.
            self._rooms_ended("disconnected")
        for unsent in outbox:
            self.control.sendFrame(self.core.seal_message(unsent.message))
        self._emit("on_reconnected", resumed)
        if self.logging_out:
            self.control.sendFrame(self.core.logout())

    def _give_up(self, reason: str, why: str) -> None:
        self.log.info("not resuming: {why}", why=why)
        self.reconnecting = False
        self._emit("on_resume_failed", why)
        self._end(reason)

    def _check_control(self, now: float) -> None:
        """Give up a control connection that stopped carrying frames (a resume follows)."""
        if self.reconnecting or self.control is None or self.core.ticket is None:
            return
        keepalive = self.welcome.keepalive
        if self._tcp_ping_sent is not None:
            if now - self._tcp_ping_sent >= keepalive:
                self._silent = "no answer on the control connection for {:.1f}s".format(
                    now - self._tcp_heard)
                self.log.info("{why}: giving it up", why=self._silent)
                self._tcp_ping_sent = None
                self.control.transport.abortConnection()
        elif now - self._tcp_heard >= keepalive:
            self._tcp_ping_id = (self._tcp_ping_id + 1) % 2**31
            self._tcp_ping_sent = now
            self.control.sendFrame(self.core.tcp_ping(self._tcp_ping_id))

    def _build_control(self, build):
        def buildProtocol(addr):
            protocol = build(addr)
            protocol.client = self
            return protocol
        return buildProtocol

    # -- TCP -----------------------------------------------------------------------

    def _frame_received(self, frame):
        try:
            frames, events = self.core.frame_received(frame)
        except (LoginFailed, ServerKeyMismatch, ProtocolError) as e:
            self._fail(e)
            return
        for out in frames:
            self.control.sendFrame(out)
        self._tcp_heard = self.reactor.seconds()
        for event in events:
            if isinstance(event, (Welcome, Resumed)) and self._waiting is not None:
                self._waiting.callback(event)  # a reconnect attempt succeeded
            elif isinstance(event, Welcome):
                self.welcome = event
                self._logged_in.callback(event)
            elif isinstance(event, Pong):
                if event.ping_id == self._tcp_ping_id:
                    self._tcp_ping_sent = None
            elif isinstance(event, SessionEnded):
                self._end(event.reason)
            elif isinstance(event, MessageData):
                self._emit("on_message", event.payload)
            else:
                self._room_event(event)

    def _fail(self, exc):
        control = self.control
        if self._waiting is not None:
            self._waiting.errback(exc)  # a reconnect attempt: reconnect.py decides
        elif not self._logged_in.called:
            self._logged_in.errback(exc)
        else:
            self._end("error: {}".format(exc))
        if control is not None:
            control.transport.loseConnection()

    def _control_lost(self, reason, unframed=False):
        if self._waiting is not None:
            self._waiting.errback(error.ConnectionClosed(
                "connection closed before the resume completed"))
            return
        if not self._logged_in.called:
            if unframed:
                self._logged_in.errback(FramingMismatch(
                    "the server answered bytes that are not {}-framed and closed the connection:"
                    " its framing may not be {}".format(self.framing, self.framing)))
            else:
                self._logged_in.errback(error.ConnectionClosed(
                    "connection closed by the server before the login completed"))
        elif (self.end_reason is None and self.auto_resume and not self.logging_out
              and self.core.ticket is not None and self.endpoint is not None):
            self.reconnecting = True
            self.control = None
            self.core.connection_lost()
            why = self._silent or (
                reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else str(reason))
            self._silent = None
            defer.ensureDeferred(reconnecting.reconnect(self, why)).addErrback(
                lambda f: (self.log.failure("reconnect failed", f), self._end("disconnected")))
            return
        self._end(self.end_reason or "disconnected")

    def _check_open(self):
        if self.end_reason is not None:
            raise SessionClosed(self.end_reason)

    def send_message(self, payload: bytes) -> None:
        """Send an application message over TCP (reliable, in order).

        Raises PayloadTooLarge over MAX_MESSAGE bytes and SessionClosed after
        the session ended; nothing is sent then.  While the client resumes the
        message waits (at most 1024 of them) and goes out once it is back.
        """
        self._check_open()
        self._send_control(self.core.data_message(payload))

    def _send_control(self, frame) -> None:
        """Send a session frame; while reconnecting (``Unsent``) it waits to be sealed.

        It must be sealed under the keys of the connection it goes out on.
        At most MAX_QUEUED_FRAMES wait.
        """
        if not isinstance(frame, Unsent):
            self.control.sendFrame(frame)
            return
        if len(self._outbox) >= MAX_QUEUED_FRAMES:
            raise RuntimeError("more than {} messages queued while reconnecting"
                               .format(MAX_QUEUED_FRAMES))
        self._outbox.append(frame)

    # -- UDP -----------------------------------------------------------------------

    def _send(self, kind, payload=b""):
        self._check_open()
        if self._moving is not None and self.core.channel is None:
            return  # moving to another node: no channel yet (UDP may lose it anyway)
        self._send_packet(self.core.datagram(kind, payload))

    def _send_packet(self, packet: bytes) -> None:
        self.udp.write(packet, self.server_udp)
        self.last_sent = self.reactor.seconds()

    def send_datagram(self, payload: bytes) -> None:
        """Send an application datagram over UDP (unreliable; may be lost or reordered).

        Raises PayloadTooLarge over MAX_DATAGRAM bytes and SessionClosed after
        the session ended.
        """
        self._send(Kind.DATA, payload)

    def _datagram_received(self, packet, addr):
        try:
            kind, payload = self.core.datagram_received(packet)
        except Drop:
            self.dropped += 1
            return
        self.last_heard = self.reactor.seconds()
        if kind == Kind.PONG:
            waiting = self._pings.pop(payload, None)
            if waiting is not None:
                sent, d = waiting
                d.callback(self.reactor.seconds() - sent)
        elif kind == Kind.PING:
            if self.end_reason is None:
                self._send(Kind.PONG, payload)
        elif kind == Kind.DATA:
            self._emit("on_datagram", payload)
        elif kind == Kind.ROOM_RELAY:
            self._room_datagram(payload)
        elif kind == Kind.DISCONNECT:
            if payload == b"replaced" and self.reconnecting and self.core.resuming is None:
                return  # our own fallback login replaced the old session
            self._end(payload.decode("ascii", "replace") or "disconnected")

    def ping(self, timeout: float = 1.0) -> defer.Deferred:
        """Send a ping over UDP; fires with the round trip in seconds.

        Fails with ``defer.TimeoutError`` after ``timeout`` seconds without a
        pong; raises SessionClosed at once after the session ended.
        """
        self._check_open()
        ping_id = os.urandom(8)
        d = defer.Deferred(lambda _: self._pings.pop(ping_id, None))
        self._pings[ping_id] = (self.reactor.seconds(), d)
        self._send(Kind.PING, ping_id)
        d.addTimeout(timeout, self.reactor)
        return d

    # -- timers and ending -----------------------------------------------------------

    def _tick_interval(self):
        return min(self.welcome.keepalive, self.welcome.session_timeout) / 4

    def _tick(self):
        self._timer = None
        now = self.reactor.seconds()
        if now - self.last_heard >= self.welcome.session_timeout:
            self._end("timeout")
            return
        if now - self.last_sent >= self.welcome.keepalive and self.end_reason is None:
            self._send(Kind.KEEPALIVE)
        self._check_control(now)
        self._timer = self.reactor.callLater(self._tick_interval(), self._tick)

    def logout(self) -> defer.Deferred:
        """End the session politely; fires with the reason when it has ended.

        Harmless after the session ended: it then fires with the reason at once.
        While reconnecting, the logout goes out once the client is back (or
        the session ends if it does not come back).
        """
        if self.end_reason is None and not self.logging_out:
            self.logging_out = True
            if self.control is not None and not self.reconnecting:
                self.control.sendFrame(self.core.logout())
        return self.wait_closed()

    def wait_closed(self) -> defer.Deferred:
        """A Deferred that fires with the reason (a str) when the session has ended."""
        d = defer.Deferred()
        self.closed.addBoth(lambda r: (d.callback(r), r)[1])
        return d

    def _end(self, reason):
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.reconnecting = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for _, d in list(self._pings.values()):
            d.cancel()
        self._abort()
        self._rooms_ended(reason)
        self._emit("on_closed", reason)  # before the Deferred, whose waiters may run on
        self.closed.callback(reason)

    def _abort(self):
        if self.control is not None and self.control.transport.connected:
            self.control.transport.loseConnection()
        if self.udp is not None:
            udp, self.udp = self.udp, None
            udp.stopListening()
