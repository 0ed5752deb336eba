"""The server's UDP hot path timed in-process, without sockets or a reactor.

``SessionRegistry.datagram_received`` is fed pre-sealed packets from a real
client channel and its replies go to a transport that drops them, so the
figure is the CPU cost of the server's own per-packet work (token lookup,
replay check, open, dispatch to the echo application, seal, stats) and
nothing else.  It counts the CPU time of this process (not wall time), and is
steadier on a busy machine than the socket benchmarks
(the best of several rounds is kept), which makes it the yardstick for
hot-path changes; ``--profile`` prints a cProfile of the same loop.
"""

import cProfile
import io
import pstats
import time

import os

from gamesession.protocol.datagram import DatagramChannel, Kind
from gamesession.protocol.handshake import SessionKeys
from gamesession.server.registry import SessionRegistry


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def seconds(self):
        return self.now


class _NullTransport:
    def __init__(self):
        self.count = 0

    def write(self, packet, address):
        self.count += 1


def _no_logout():
    pass


class _Control:
    def send_data(self, payload):
        pass

    def session_ended(self, reason):
        pass


def make_registry(sessions=1):
    """(registry, [client channel per session]) with ``sessions`` open sessions.

    The keys are random rather than negotiated (the handshake is not what is
    timed), so 100,000 sessions take seconds to open, not minutes.
    """
    # The per-session rate limit on, as in a default server, but never reached.
    registry = SessionRegistry(_Clock(), max_sessions=sessions + 1, datagram_rate=1e9)
    registry.transport = _NullTransport()
    clients = []
    for i in range(sessions):
        keys = SessionKeys(*(os.urandom(32) for _ in range(4)))
        session = registry.open("user{}".format(i), object(), _no_logout, _Control(), keys)
        clients.append(DatagramChannel(session.token, keys.udp_c2s, keys.udp_s2c))
    return registry, clients


def sealed_packets(clients, count, payload_size):
    pad = bytes(max(0, payload_size - 8))
    return [clients[i % len(clients)].seal(Kind.DATA, i.to_bytes(8, "little") + pad)
            for i in range(count)]


def _profile_text(profiler) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    return out.getvalue()


def run(packets=50_000, payload=64, rounds=5, sessions=1, profile=False):
    best = None
    stats_text = None
    for _ in range(rounds):
        registry, clients = make_registry(sessions)
        batch = sealed_packets(clients, packets, payload)
        receive = registry.datagram_received
        address = ("127.0.0.1", 40000)
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        t0 = time.process_time_ns()
        for packet in batch:
            receive(packet, address)
        took = time.process_time_ns() - t0
        if profiler is not None:
            profiler.disable()
            stats_text = _profile_text(profiler)
            profile = False
        assert registry.transport.count == packets, registry.stats
        if best is None or took < best:
            best = took
    result = {
        "benchmark": "hotpath",
        "packets": packets,
        "payload": payload,
        "sessions": sessions,
        "ns_per_packet": round(best / packets, 1),
        "packets_per_s": round(packets / (best / 1e9), 1),
    }
    if stats_text is not None:
        result["profile"] = stats_text
    return result


def run_port(packets=50_000, payload=64, rounds=5, sessions=1, udp_io="batched", window=64,
             profile=False):
    """CPU time per datagram of the whole game port on loopback, system calls included.

    The real game port (``BatchedPort``, or Twisted's ``udp.Port`` for
    ``plain``) listens on 127.0.0.1 in this process, its ``doRead`` driven by
    hand (the reactor never runs); a client socket in the same process queues
    ``window`` sealed datagrams for it, then one ``doRead`` receives, opens,
    echoes, seals and sends them.  Each ``doRead`` is timed on the wall clock
    and the figure is the **median** over all of them, per datagram: a read
    that another process interrupted is an outlier the median ignores, so
    the figure is steadier on a shared machine than ``bench udp``.
    """
    import socket

    from twisted.internet import reactor, udp

    from gamesession import mmsg
    from gamesession.server.gameport import BatchedPort, GamePort

    best = None
    stats_text = None
    for _ in range(rounds):
        registry, clients = make_registry(sessions)
        batch = sealed_packets(clients, packets, payload)
        protocol = GamePort(registry)
        if udp_io == "batched":
            port = BatchedPort(0, protocol, "127.0.0.1", reactor=reactor)
        else:
            port = udp.Port(0, protocol, "127.0.0.1", reactor=reactor)
        port.startListening()
        reactor.removeReader(port)  # driven by hand below
        port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        client.bind(("127.0.0.1", 0))
        client.connect(("127.0.0.1", port.getHost().port))
        client.setblocking(False)
        io_ = mmsg.batcher(client, window)
        reads = []
        received = 0
        profiler = cProfile.Profile() if profile else None
        try:
            for start in range(0, packets, window):
                chunk = batch[start:start + window]
                sent = 0
                while sent < len(chunk):
                    sent += io_.send(chunk[sent:])
                if profiler is not None:
                    profiler.enable()
                t0 = time.perf_counter_ns()
                port.doRead()
                reads.append((time.perf_counter_ns() - t0) / len(chunk))
                if profiler is not None:
                    profiler.disable()
                while True:
                    got = io_.recv()
                    if not got:
                        break
                    received += len(got)
        finally:
            port.stopListening()
            client.close()
        if profiler is not None:
            stats_text = _profile_text(profiler)
            profile = False
        reads.sort()
        took = reads[len(reads) // 2]
        if best is None or took < best:
            best = took
    result = {
        "benchmark": "hotpath-port",
        "udp_io": udp_io,
        "packets": packets,
        "payload": payload,
        "sessions": sessions,
        "echoed": received,
        "ns_per_packet": round(best, 1),
        "packets_per_s": round(1e9 / best, 1),
    }
    if stats_text is not None:
        result["profile"] = stats_text
    return result
