"""The Twisted client: log in over TCP, then talk over the session's UDP channel.

    client = await GameClient.connect(reactor, "127.0.0.1", 7000, server_key,
                                      "alice", "pw")
    rtt = await client.ping()
    await client.logout()

All protocol logic is in ``clientcore.ClientCore``; this module moves bytes
and runs the timers (keepalive, timeout) on the injected reactor.
"""

import os

from twisted.internet import defer, error
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger

from gamesession.client.room import RoomOperations
from gamesession.protocol.clientcore import ClientCore, LoginFailed, MessageData, SessionEnded, Welcome
from gamesession.protocol.datagram import Drop, Kind
from gamesession.framing import FRAMINGS
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.protocol.wire import ProtocolError


class SessionClosed(Exception):
    """An operation on a client whose session has ended; ``reason`` says how."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self):
        return "session ended ({})".format(self.reason)


class _ControlProtocol:
    """Mixed with a framing; forwards frames to the GameClient."""

    client = None

    def connectionMade(self):
        self.sendFrame(self.client.core.hello())

    def frameReceived(self, frame):
        self.client._frame_received(frame)

    def frameTooLong(self):
        self.client._fail(ProtocolError(413, "server sent an oversized frame"))

    def connectionLost(self, reason):
        self.client._control_lost(reason)


class _DatagramProtocol(DatagramProtocol):
    def __init__(self, client):
        self.client = client

    def datagramReceived(self, datagram, addr):
        self.client._datagram_received(datagram, addr)


class GameClient(RoomOperations):
    log = Logger()

    def __init__(self, reactor, core: ClientCore, framing: str = "int16"):
        self.reactor = reactor
        self.core = core
        self.framing = framing
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
        self.on_datagram = None  # callable(payload)
        self.on_message = None  # callable(payload)
        self.dropped = 0
        self._init_rooms()

    @classmethod
    async def connect(cls, reactor, host, port, server_key, user, password="",
                      framing="int16", udp_host=None, udp_port=None, timeout=10.0):
        """Log in and open the UDP channel; raise LoginFailed, ServerKeyMismatch, ..."""
        client = cls(reactor, ClientCore(bytes(server_key), user, password), framing)
        await client._login(HostnameEndpoint(reactor, host, port, timeout=timeout),
                            udp_host, udp_port, timeout)
        return client

    async def _login(self, endpoint, udp_host, udp_port, timeout):
        protocol_class = type("ClientControl", (_ControlProtocol, FRAMINGS[self.framing]), {})
        factory = Factory.forProtocol(protocol_class)
        factory.buildProtocol = self._build_control(factory.buildProtocol)
        self._logged_in.addTimeout(timeout, self.reactor)
        try:
            self.control = await endpoint.connect(factory)
            welcome = await self._logged_in
        except defer.TimeoutError:
            self._abort()
            raise defer.TimeoutError("login timed out after {:g} seconds".format(timeout))
        except BaseException:
            self._abort()
            raise
        peer = self.control.transport.getPeer()
        self.server_udp = (udp_host or peer.host, udp_port or welcome.udp_port)
        self.udp = self.reactor.listenUDP(0, _DatagramProtocol(self))
        self.last_heard = self.reactor.seconds()
        self._send(Kind.KEEPALIVE)  # the first authenticated packet: tells the server our address
        self._timer = self.reactor.callLater(self._tick_interval(), self._tick)

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
        for event in events:
            if isinstance(event, Welcome):
                self.welcome = event
                self._logged_in.callback(event)
            elif isinstance(event, SessionEnded):
                self._end(event.reason)
            elif isinstance(event, MessageData) and self.on_message is not None:
                self.on_message(event.payload)
            else:
                self._room_event(event)

    def _fail(self, exc):
        if not self._logged_in.called:
            self._logged_in.errback(exc)
        else:
            self._end("error: {}".format(exc))
        if self.control is not None:
            self.control.transport.loseConnection()

    def _control_lost(self, reason):
        if not self._logged_in.called:
            self._logged_in.errback(error.ConnectionClosed(
                "connection closed by the server before the login completed"))
        self._end(self.end_reason or "disconnected")

    def send_message(self, payload: bytes) -> None:
        self.control.sendFrame(self.core.data_message(payload))

    # -- UDP -----------------------------------------------------------------------

    def _send(self, kind, payload=b""):
        if self.end_reason is not None:
            return
        self._send_packet(self.core.datagram(kind, payload))

    def _send_packet(self, packet: bytes) -> None:
        self.udp.write(packet, self.server_udp)
        self.last_sent = self.reactor.seconds()

    def _check_open(self) -> None:
        if self.end_reason is not None:
            raise SessionClosed(self.end_reason)

    def send_datagram(self, payload: bytes) -> None:
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
            self._send(Kind.PONG, payload)
        elif kind == Kind.DATA and self.on_datagram is not None:
            self.on_datagram(payload)
        elif kind == Kind.ROOM_RELAY:
            self._room_datagram(payload)
        elif kind == Kind.DISCONNECT:
            self._end(payload.decode("ascii", "replace") or "disconnected")

    def ping(self, timeout: float = 1.0) -> defer.Deferred:
        """Send a ping; fires with the round trip in seconds, or TimeoutError."""
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
        if now - self.last_sent >= self.welcome.keepalive:
            self._send(Kind.KEEPALIVE)
        self._timer = self.reactor.callLater(self._tick_interval(), self._tick)

    def logout(self) -> defer.Deferred:
        """End the session politely; fires when the server closed the connection."""
        if self.end_reason is None and self.control is not None:
            self.control.sendFrame(self.core.logout())
        return self.wait_closed()

    def wait_closed(self) -> defer.Deferred:
        d = defer.Deferred()
        self.closed.addBoth(lambda r: (d.callback(r), r)[1])
        return d

    def _end(self, reason):
        if self.end_reason is not None:
            return
        self.end_reason = reason
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for _, d in list(self._pings.values()):
            d.cancel()
        self._abort()
        self._rooms_ended(reason)
        self.closed.callback(reason)

    def _abort(self):
        if self.control is not None and self.control.transport.connected:
            self.control.transport.loseConnection()
        if self.udp is not None:
            udp, self.udp = self.udp, None
            udp.stopListening()
