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


# -- room fan-out -------------------------------------------------------------------------


class _FakeBatchIO:
    """What ``BatchedPort`` reads from and writes to, in memory: no socket, no kernel.

    ``recv()`` hands out the prepared chunks one per call (``[]`` when none
    is left); ``send(items)`` counts the datagrams and the calls, as
    ``mmsg.AddressedBatch.send`` would make one ``sendmmsg`` per call of up
    to ``batch`` datagrams.
    """

    def __init__(self):
        self.chunks = []
        self.sent = 0
        self.send_calls = 0

    def recv(self):
        return self.chunks.pop() if self.chunks else []

    def send(self, items):
        self.sent += len(items)
        self.send_calls += 1
        return 0


class _RoomControl(_Control):
    def send_message(self, message, *args):
        pass


def _fanout_server(receivers: int):
    """(registry, port, room, sender's client channel, sender's address) for a room of
    ``receivers + 1`` sessions, every one with a UDP address, on a ``BatchedPort`` over
    ``_FakeBatchIO``: the real port code, registry, rooms and sessions, no socket."""
    from twisted.internet import reactor

    from gamesession.protocol import rooms as codec
    from gamesession.server.gameport import BatchedPort, GamePort
    from gamesession.server.rooms import RoomManager

    count = receivers + 1
    registry = SessionRegistry(_Clock(), max_sessions=count + 1, datagram_rate=1e9)
    # The relay budget on, as in a default server, but never reached.
    registry.rooms = RoomManager(registry, max_room_members=count, relay_rate=1e12,
                                 relay_burst=1e12)
    port = BatchedPort(0, GamePort(registry), "127.0.0.1", reactor=reactor)
    port._batch_io = _FakeBatchIO()
    port._sendto = _CountingSendto()
    port.protocol.makeConnection(port)  # GamePort.startProtocol: registry.transport = port
    clients = []
    for i in range(count):
        keys = SessionKeys(*(os.urandom(32) for _ in range(4)))
        session = registry.open("user{}".format(i), object(), _no_logout, _RoomControl(), keys)
        client = DatagramChannel(session.token, keys.udp_c2s, keys.udp_s2c)
        address = ("127.0.0.1", 40000 + i)
        registry.datagram_received(client.seal(Kind.KEEPALIVE), address)
        clients.append((session, client, address))
    manager = registry.rooms
    first = clients[0][0]
    manager.request(first, codec.create(1, "bench", max_members=count))
    room = manager.of_type("bench")[0]
    for session, _, _ in clients[1:]:
        manager.request(session, codec.join(1, room.id))
    assert len(room.members) == count
    port._sendto.count = 0
    return registry, port, room, clients[0][1], clients[0][2]


class _CountingSendto:
    """The socket's ``sendto`` as ``BatchedPort`` calls it outside a read batch: counted."""

    def __init__(self):
        self.count = 0

    def __call__(self, packet, address):
        self.count += 1


def run_fanout(fanouts=(1, 2, 4, 8, 16), packets=20_000, payload=64, rounds=5, batch=64,
               profile=False):
    """CPU time of the room relay per datagram and per copy, for rooms of ``N + 1``.

    Two figures for each fan-out N, both through the real ``BatchedPort``,
    registry, ``RoomManager`` and sessions over an in-memory socket
    (``_FakeBatchIO``: the system calls are not timed, and not made):

    * **relay**: ROOM_SEND datagrams from one member, sealed by a client
      channel beforehand, go through ``BatchedPort.doRead`` in read batches of
      ``batch``; each is opened, checked against the relay budget, and sealed
      for the N others (each its own key and counter), the copies sent at the
      end of the read batch.
    * **tick**: ``room.send_datagram(payload)`` outside any read batch, as a
      room handler's ``tick`` or a timer calls it, in the same room once the
      sender left: N copies sealed and sent.

    Figures are ns of this process's CPU time per datagram received (or per
    ``send_datagram`` call) and per copy delivered; the best of ``rounds``.
    ``profile``: a cProfile of both phases at the largest fan-out, in an
    extra round that does not count.
    """
    from gamesession.protocol import rooms as codec

    data = bytes(payload)
    results = []
    stats_text = None
    for receivers in fanouts:
        best_relay = best_tick = None
        profiled = profile and receivers == max(fanouts)
        for round_ in range(rounds + profiled):
            profiler = cProfile.Profile() if profiled and round_ == rounds else None
            registry, port, room, client, address = _fanout_server(receivers)
            io_ = port._batch_io
            sends = [client.seal(Kind.ROOM_SEND, codec.pack_room_send(room.id, data))
                     for _ in range(packets)]
            chunks = [[(packet, address) for packet in sends[start:start + batch]]
                      for start in range(0, packets, batch)]
            chunks.reverse()  # recv() pops from the end
            io_.chunks = chunks
            if profiler is not None:
                profiler.enable()
            t0 = time.process_time_ns()
            while io_.chunks:
                port.doRead()
            relay = time.process_time_ns() - t0
            assert io_.sent == packets * receivers, (io_.sent, registry.stats.dropped)
            assert registry.stats.rooms.relayed["udp_out"] == packets * receivers
            # The sender leaves: the tick goes to the N others, as the relay did.
            room.manager.remove(room, next(iter(room.members.values())), "left")
            sent_before = io_.sent + port._sendto.count
            send = room.send_datagram
            t0 = time.process_time_ns()
            for _ in range(packets):
                send(data)
            tick = time.process_time_ns() - t0
            assert io_.sent + port._sendto.count - sent_before == packets * receivers
            if profiler is not None:
                profiler.disable()
                stats_text = _profile_text(profiler)
                continue
            best_relay = relay if best_relay is None else min(best_relay, relay)
            best_tick = tick if best_tick is None else min(best_tick, tick)
        results.append({
            "fanout": receivers,
            "relay_ns_per_datagram": round(best_relay / packets, 1),
            "relay_ns_per_copy": round(best_relay / (packets * receivers), 1),
            "tick_ns_per_send": round(best_tick / packets, 1),
            "tick_ns_per_copy": round(best_tick / (packets * receivers), 1),
        })
    result = {
        "benchmark": "hotpath-fanout",
        "packets": packets,
        "payload": payload,
        "rounds": rounds,
        "batch": batch,
        "fanouts": results,
    }
    if stats_text is not None:
        result["profile"] = stats_text
    return result
