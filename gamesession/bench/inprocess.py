"""``bench sessions --in-process``: memory per session of the real server objects, at any N.

No sockets and no subprocess, so N is not bounded by file descriptors: the
real ``LoginFactory`` builds a real ``LoginProtocol`` per client over a small
fake TCP transport, each client runs the whole login (X25519 hello, sealed
login, welcome) with a ``ClientCore``, and sends one authenticated datagram
so its session learns a UDP address, as a real session does.  The client
side is then thrown away, so what stays allocated is what the server holds
per session: the registry entries, the session, the login protocol and its
stream ciphers, the avatar, the fake transport.  Memory is measured twice:
``tracemalloc`` (Python allocations, exact) and the process's RSS growth.
"""

import gc
import os
import time
import tracemalloc

from nacl.public import PrivateKey
from twisted.internet import task
from twisted.internet.address import IPv4Address

from gamesession.protocol.clientcore import ClientCore, Welcome
from gamesession.protocol.datagram import Kind
from gamesession.protocol.wire import encode_frame, split_frames
from gamesession.server.accounts import make_portal
from gamesession.server.login import LoginFactory
from gamesession.server.registry import SessionRegistry
from gamesession.ops.stats import ServerStats


class FakeTCPTransport:
    """As little of ``ITCPTransport`` as ``LoginProtocol`` uses; output kept until cleared.

    Like Twisted's ``tcp.Server`` it keeps the peer as a (host, port) tuple
    and builds the address object when asked.
    """

    __slots__ = ("client", "out", "closed")

    def __init__(self, client):
        self.client = client
        self.out = []
        self.closed = False

    def write(self, data):
        if self.out is not None:
            self.out.append(data)

    def writeSequence(self, seq):
        for data in seq:
            self.write(data)

    def getPeer(self):
        return IPv4Address("TCP", *self.client)

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", 7000)

    def registerProducer(self, producer, streaming):
        pass

    def unregisterProducer(self):
        pass

    def loseConnection(self):
        self.closed = True

    def abortConnection(self):
        self.closed = True


class _NullUDP:
    def write(self, packet, address):
        pass


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def build_server(sessions):
    clock = task.Clock()
    clock.advance(1000.0)
    registry = SessionRegistry(clock, stats=ServerStats(), max_sessions=sessions + 16)
    registry.transport = _NullUDP()
    key = PrivateKey.generate()
    factory = LoginFactory(make_portal([]), registry, key, 7001, clock, login_timeout=10.0)
    return clock, registry, factory, bytes(key.public_key)


def log_in(factory, registry, server_public, index):
    """One whole login and one datagram; returns nothing the server does not hold."""
    address = ("127.0.0.1", 1024 + index % 60000)
    protocol = factory.buildProtocol(IPv4Address("TCP", *address))
    transport = FakeTCPTransport(address)
    protocol.makeConnection(transport)
    core = ClientCore(server_public, "p{}".format(index), "")
    protocol.dataReceived(encode_frame(core.hello()))
    for _ in range(3):
        frames, _ = split_frames(b"".join(transport.out))
        transport.out = []
        replies = []
        for frame in frames:
            out, events = core.frame_received(frame)
            replies.extend(out)
            if any(isinstance(e, Welcome) for e in events):
                break
        for frame in replies:
            protocol.dataReceived(encode_frame(frame))
        if core.welcome is not None:
            break
    if core.welcome is None:
        raise RuntimeError("in-process login {} failed".format(index))
    transport.out = None  # from now on the server's TCP output is dropped, as sent
    registry.datagram_received(core.datagram(Kind.KEEPALIVE), address)


def timer_turns(registry, seconds=6.0):
    """CPU time of the registry's timer work per reactor turn, with every session due at once.

    All sessions logged in at the same clock time, so all their keepalives
    fall due together: the worst case.  The real ``SweepService`` runs on the
    registry's ``task.Clock`` for ``seconds``; each of its turns (a tick, or a
    ``callLater(0)`` continuation) is timed in process CPU time.  For
    comparison, ``one_block_ms`` is the same due work done in one call
    (``sweep()`` without a limit), which is what a single sweep over every
    session costs the reactor in one turn.
    """
    from gamesession.server.tap import SweepService

    clock = registry.clock
    service = SweepService(registry, clock)
    turns = []
    step = service._step

    def timed_step():
        t0 = time.process_time_ns()
        step()
        turns.append(time.process_time_ns() - t0)

    service._step = timed_step
    service.startService()
    end = clock.seconds() + seconds
    while clock.seconds() < end:
        clock.advance(registry.timer_resolution)
        while clock.getDelayedCalls() and min(c.getTime() for c in clock.getDelayedCalls()) \
                <= clock.seconds():
            clock.advance(0)
    service.stopService()
    # The same due work in one block: every session's keepalive at once.
    clock.advance(registry.keepalive)
    t0 = time.process_time_ns()
    registry.sweep()
    one_block = time.process_time_ns() - t0
    turns.sort()
    return {
        "timer_turns": len(turns),
        "timer_turn_max_ms": round(turns[-1] / 1e6, 2) if turns else None,
        "timer_turn_p99_ms": round(turns[int(len(turns) * 0.99)] / 1e6, 2) if turns else None,
        "timer_cpu_ms_per_s": round(sum(turns) / 1e6 / seconds, 1),
        "one_block_ms": round(one_block / 1e6, 1),
        "sessions_alive_after_timers": len(registry),
    }


def _populate(sessions, progress, label):
    """A server with ``sessions`` sessions: (registry, seconds the logins after the first took)."""
    clock, registry, factory, public = build_server(sessions)
    log_in(factory, registry, public, 0)
    return registry, factory, public


def _log_in_rest(registry, factory, public, sessions, progress, label):
    started = time.monotonic()
    last = started
    for i in range(1, sessions):
        log_in(factory, registry, public, i)
        now = time.monotonic()
        if progress is not None and now - last >= 0.5:
            last = now
            progress("{} logins {:,}/{:,} ({:,.0f}/s)".format(label, i + 1, sessions,
                                                             i / (now - started)))
    assert len(registry) == sessions, len(registry)
    return time.monotonic() - started


def run(sessions=100_000, progress=None):
    """Bytes per session by RSS growth (first pass) and by tracemalloc (second pass)."""
    extra = max(1, sessions - 1)
    # Pass 1: RSS, without tracemalloc's own tables in the way.
    gc.collect()
    registry, factory, public = _populate(sessions, progress, "rss")
    gc.collect()
    rss_before = _rss_bytes()
    seconds = _log_in_rest(registry, factory, public, sessions, progress, "rss pass:")
    gc.collect()
    rss_after = _rss_bytes()
    timers = timer_turns(registry)
    del registry, factory
    gc.collect()
    # Pass 2: tracemalloc, every Python allocation the server keeps.
    registry, factory, public = _populate(sessions, progress, "traced")
    gc.collect()
    tracemalloc.start(1)
    traced_before = tracemalloc.get_traced_memory()[0]
    _log_in_rest(registry, factory, public, sessions, progress, "tracemalloc pass:")
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    top = []
    result = None
    for stat in snapshot.statistics("lineno")[:15]:
        frame = stat.traceback[0]
        top.append({"where": "{}:{}".format(os.path.relpath(frame.filename), frame.lineno),
                    "bytes_per_session": round(stat.size / extra, 1)})
    result = {
        "benchmark": "sessions-in-process",
        "sessions": sessions,
        "login_seconds": round(seconds, 2),
        "logins_per_s": round(extra / seconds, 1) if seconds else None,
        "traced_bytes_per_session": round((traced_after - traced_before) / extra, 1),
        "rss_bytes_per_session": round((rss_after - rss_before) / extra, 1),
        "by_allocation_site": top,
    }
    result.update(timers)
    return result
