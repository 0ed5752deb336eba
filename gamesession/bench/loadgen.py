"""The load generator: real logins through ``clientcore``, then UDP at full rate.

Sans-Twisted on purpose: a selector loop and non-blocking sockets drive
``ClientCore`` objects directly (the sans-I/O core the Twisted client uses), so
the generator spends its core on the protocol and not on a framework, and can
outrun the server it measures.  Packets are sealed on the fly, one
``ClientCore.datagram`` call each, and every reply is opened and checked with
``ClientCore.datagram_received``: the generator does the same crypto work per
packet as the server.
"""

import errno
import os
import select
import selectors
import socket
import struct
import time
from array import array
from collections import Counter

from gamesession.protocol.wire import encode_frame, split_frames
from gamesession.protocol.clientcore import ClientCore, LoginFailed, SessionEnded, Welcome
from gamesession.protocol.datagram import Drop, Kind
from gamesession.protocol.handshake import HandshakeError
from gamesession.protocol.wire import ProtocolError
from gamesession.mmsg import batcher

RING = 1 << 17
LINGER_RESET = struct.pack("ii", 1, 0)
# The server ends a session after 10 s without authenticated traffic (default).
KEEPALIVE_EVERY = 3.0
# Sessions looked at / keepalives sent per loop turn: spread out, bursts of
# thousands would overflow the server's socket buffer.
KEEPALIVE_SCAN = 512
KEEPALIVE_BURST = 128
PING_RETRY = 0.5


def udp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 1 << 21)
        except OSError:
            pass
    sock.bind(("127.0.0.1", 0))
    sock.connect((host, port))
    sock.setblocking(False)
    return sock


class Login:
    """One client: its ClientCore, its TCP socket and where it is in the login."""

    __slots__ = ("core", "sock", "buf", "state", "started", "slot", "last_sent")

    def __init__(self, core, sock, slot, now):
        self.core = core
        self.sock = sock
        self.buf = b""
        self.state = "connecting"
        self.started = now
        self.slot = slot
        self.last_sent = now


class Fleet:
    """Many concurrent clients of one server, sharing one UDP socket.

    A client is *ready* once its login was welcomed and its first
    authenticated UDP packet (a PING) was answered with a PONG.
    """

    def __init__(self, host, login_port, udp_port, server_key, password="pw", reset_on_close=False,
                 keep_ready=True):
        self.host = host
        self.login_addr = (host, login_port)
        self.server_key = server_key
        self.password = password
        self.reset_on_close = reset_on_close
        self.keep_ready = keep_ready
        self.ready_count = 0
        self.sel = selectors.DefaultSelector()
        self.udp = udp_socket(host, udp_port)
        self.sel.register(self.udp, selectors.EVENT_READ, None)
        self.by_token = {}
        self.ready = []
        self.in_progress = 0
        self.failures = Counter()
        self.ended = Counter()
        self.on_ready = None
        self.on_failed = None
        self.on_event = None  # callable(login, event): other ClientCore events (rooms)
        self.on_datagram = None  # callable(login, kind, payload): other datagram kinds
        self.latencies = array("q")
        self.pinging = {}
        self.ping_retries = 0
        self._keepalive_index = 0
        self._last_retry = time.monotonic()

    # -- logins -----------------------------------------------------------------

    def start(self, user: str, slot=None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.reset_on_close:
            # Closing with RST leaves no TIME_WAIT socket behind: thousands of
            # logins a second would otherwise run out of ephemeral ports.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        err = sock.connect_ex(self.login_addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed(None, "connect: " + os.strerror(err))
            return
        login = Login(ClientCore(self.server_key, user, self.password), sock, slot,
                      time.perf_counter_ns())
        self.in_progress += 1
        self.sel.register(sock, selectors.EVENT_WRITE, login)

    def close(self, login) -> None:
        if login.sock is None:
            return
        try:
            self.sel.unregister(login.sock)
        except (KeyError, ValueError):
            pass
        login.sock.close()
        login.sock = None
        if login.core.welcome is not None:
            self.by_token.pop(login.core.welcome.token, None)

    def _failed(self, login, why: str) -> None:
        self.failures[why.split(":")[0]] += 1
        if login is not None:
            if login.state not in ("ready", "closed"):
                self.in_progress -= 1
            self.pinging.pop(login, None)
            login.state = "closed"
            self.close(login)
            if self.on_failed is not None:
                self.on_failed(login, why)

    def send_frame(self, login, frame: bytes) -> None:
        login.sock.sendall(encode_frame(frame))

    def _tcp_event(self, login, mask) -> None:
        if login.state == "connecting":
            err = login.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self._failed(login, "connect: " + os.strerror(err))
            login.state = "handshake"
            self.sel.modify(login.sock, selectors.EVENT_READ, login)
            self.send_frame(login, login.core.hello())
            return
        try:
            data = login.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            data = b""
            why = "reset: {}".format(e)
        else:
            why = "closed: server closed the connection"
        if not data:
            if login.state == "ready":
                self.ended["closed"] += 1
                login.state = "closed"
                self.close(login)
                return
            return self._failed(login, why)
        frames_in, login.buf = split_frames(login.buf + data)
        for frame in frames_in:
            try:
                frames, events = login.core.frame_received(frame)
            except (LoginFailed, HandshakeError, ProtocolError) as e:
                return self._failed(login, "{}: {}".format(type(e).__name__, e))
            for out in frames:
                self.send_frame(login, out)
            for event in events:
                if isinstance(event, Welcome):
                    self.by_token[event.token] = login
                    login.state = "ping"
                    self._send_udp(login, Kind.PING, b"login")
                    self.pinging[login] = login.last_sent
                elif isinstance(event, SessionEnded):
                    self.ended[event.reason] += 1
                    if login.state != "ready":
                        self.failures["ended: " + event.reason] += 1
                elif self.on_event is not None:
                    self.on_event(login, event)

    def _send_udp(self, login, kind, payload=b""):
        login.last_sent = time.monotonic()
        try:
            self.udp.send(login.core.datagram(kind, payload))
        except BlockingIOError:
            pass

    def drain_udp(self, limit=4096) -> None:
        udp = self.udp
        for _ in range(limit):
            try:
                packet = udp.recv(2048)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue
            login = self.by_token.get(packet[:8])
            if login is None:
                continue
            try:
                kind, payload = login.core.datagram_received(packet)
            except Drop:
                continue
            if kind == Kind.PING:
                # The server's keepalive measures the RTT: answer as a client does.
                self._send_udp(login, Kind.PONG, payload)
            elif kind == Kind.PONG and login.state == "ping":
                login.state = "ready"
                self.pinging.pop(login, None)
                self.in_progress -= 1
                self.latencies.append(time.perf_counter_ns() - login.started)
                self.ready_count += 1
                if self.keep_ready:
                    self.ready.append(login)
                if self.on_ready is not None:
                    self.on_ready(login)
            elif self.on_datagram is not None:
                self.on_datagram(login, kind, payload)

    def keepalive(self, now=None) -> None:
        """Keep held sessions alive and ping again where a PING or PONG was lost.

        UDP may drop the first PING (a socket buffer full of keepalives); a
        real client retries too.  Keepalives go to a slice of the sessions
        per loop turn, never to all of them at once.
        """
        now = time.monotonic() if now is None else now
        if self.pinging and now - self._last_retry >= PING_RETRY / 2:
            self._last_retry = now
            for login, sent in list(self.pinging.items()):
                if login.state != "ping":
                    del self.pinging[login]
                elif now - sent >= PING_RETRY:
                    self.ping_retries += 1
                    self._send_udp(login, Kind.PING, b"login")
                    self.pinging[login] = login.last_sent
        ready = self.ready
        if not ready:
            return
        sent = 0
        index = self._keepalive_index
        for _ in range(min(KEEPALIVE_SCAN, len(ready))):
            index = (index + 1) % len(ready)
            login = ready[index]
            if login.state == "ready" and now - login.last_sent >= KEEPALIVE_EVERY:
                self._send_udp(login, Kind.KEEPALIVE)
                sent += 1
                if sent >= KEEPALIVE_BURST:
                    break
        self._keepalive_index = index

    def poll(self, timeout: float, udp: bool = True) -> None:
        """Handle what is ready (TCP, and UDP unless ``udp`` is false: a caller
        that reads the UDP socket itself, in batches), then the keepalives."""
        for key, mask in self.sel.select(timeout):
            if key.data is None:
                if udp:
                    self.drain_udp()
            else:
                self._tcp_event(key.data, mask)
        self.keepalive()

    def run(self, seconds: float, done=lambda: False, tick=None) -> None:
        end = time.monotonic() + seconds
        while not done():
            now = time.monotonic()
            if now >= end:
                break
            self.poll(min(0.05, end - now))
            if tick is not None:
                tick()

    def touch_all(self) -> None:
        now = time.monotonic()
        for login in self.ready:
            login.last_sent = now

    def close_all(self) -> None:
        for key in list(self.sel.get_map().values()):
            if key.data is not None:
                self.close(key.data)
        self.sel.close()
        self.udp.close()


def percentiles(samples_ns, points=(50, 90, 99)) -> dict:
    """{'p50_us': ...} of nanosecond samples."""
    if not len(samples_ns):
        return {"p{}_us".format(p): None for p in points}
    ordered = sorted(samples_ns)
    last = len(ordered) - 1
    return {"p{}_us".format(p): round(ordered[min(last, (len(ordered) * p) // 100)] / 1000, 1)
            for p in points}


def blast(sock, seconds, payload_size, window, sessions=None, warmup=0.0, progress=None,
          label=""):
    """Keep ``window`` packets in flight for ``seconds``; count echoed replies and time them.

    ``sessions`` is a list of ClientCore objects: each packet is sealed by the
    next one in turn and each reply opened by its owner.  Without sessions the
    payload goes out raw (the baseline).  Replies are matched by the sequence
    number at the start of the payload, so a lost packet never skews the RTTs.
    Packets go out and come back in batches (``mmsg``): the packets of one
    batch share a send timestamp, those of one receive call a receive one.
    """
    perf = time.perf_counter_ns
    pad = bytes(max(0, payload_size - 8))
    sent_at = [0] * RING
    mask = RING - 1
    rtts = array("q")
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    io = batcher(sock, max(1, window))
    send_batch, recv_batch = io.send, io.recv
    data_kind, ping_kind, pong_kind = Kind.DATA, Kind.PING, Kind.PONG
    if sessions:
        cores = list(sessions)
        ncores = len(cores)
        owner = {core.channel.token: core for core in cores}.get
    seq = 0
    inflight = 0
    lost = stray = unsent = 0
    start = perf()
    measure_from = start + int(warmup * 1e9)
    end = measure_from + int(seconds * 1e9)
    counted = 0
    next_report = start + 250_000_000
    measuring = warmup <= 0
    while True:
        room = window - inflight
        if room > 0:
            if sessions:
                packets = [cores[n % ncores].datagram(data_kind, n.to_bytes(8, "little") + pad)
                           for n in range(seq, seq + room)]
            else:
                packets = [n.to_bytes(8, "little") + pad for n in range(seq, seq + room)]
            now = perf()
            for n in range(seq, seq + room):
                sent_at[n & mask] = now
            sent = send_batch(packets)
            unsent += room - sent
            seq += room
            inflight += sent
        replies = recv_batch()
        if not replies:
            if not poller.poll(100):
                lost += inflight
                inflight = 0
                if perf() >= end:
                    break
            continue
        now = perf()
        for reply in replies:
            if sessions:
                core = owner(reply[:8])
                if core is None:
                    stray += 1
                    continue
                try:
                    kind, payload = core.datagram_received(reply)
                except Drop:
                    stray += 1
                    continue
                if kind != data_kind:
                    if kind == ping_kind:
                        # A server keepalive PING: answer as a client does.
                        try:
                            sock.send(core.datagram(pong_kind, payload))
                        except OSError:
                            pass
                    stray += 1
                    continue
            else:
                payload = reply
            inflight -= 1
            if measuring:
                counted += 1
                rtts.append(now - sent_at[int.from_bytes(payload[:8], "little") & mask])
        if inflight < 0:
            inflight = 0
        if now >= next_report:
            next_report = now + 250_000_000
            if not measuring and now >= measure_from:
                measuring = True
                measure_from = now
                end = now + int(seconds * 1e9)
            if now >= end:
                break
            if progress is not None and measuring:
                elapsed = (now - measure_from) / 1e9
                progress("{} {:.1f}/{:.0f}s {:,.0f} pps".format(
                    label, elapsed, seconds, counted / elapsed if elapsed else 0))
    duration = (perf() - measure_from) / 1e9
    # Let the last replies in flight arrive so they are not seen by the next phase.
    deadline = time.monotonic() + 0.2
    while inflight > 0 and time.monotonic() < deadline:
        if poller.poll(20):
            inflight -= len(recv_batch())
    poller.unregister(sock.fileno())
    result = {
        "pps": round(counted / duration, 1) if duration > 0 else 0.0,
        "packets": counted,
        "seconds": round(duration, 3),
        "window": window,
        "sent": seq - unsent,
        "lost": lost,
        "unsent": unsent,
        "stray": stray,
    }
    result.update(percentiles(rtts))
    return result
