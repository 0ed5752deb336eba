"""``gamesession bench rooms``: room relay through the real server against a plain relay.

R rooms of K bots; every bot sends HZ room datagrams per second to its room
(all other members), paced over the whole fleet.  Each datagram carries its
sequence number, send time, the sender's room and bot index, so every
receiver measures send-to-receive latency at another member, counts what
arrived, and checks that it came from its own room (``cross_room_leaks``)
and from the member the server stamped (``misattributed``): both must be 0.

The bots are real sessions: ``loadgen.Fleet`` logs them in with the real
``ClientCore``, which also builds every room request, seals every ROOM_SEND
and opens every ROOM_RELAY.  The same load then goes through
``gamesession.bench.relay`` (plain Twisted, no crypto, no checks) in the same
run: ``baseline_delivered_per_s`` and ``ratio``.
"""

import os
import select
import socket
import struct
import time
from array import array

from gamesession.bench import procs
from gamesession.bench.loadgen import percentiles, udp_socket
from gamesession.mmsg import batcher
from gamesession.protocol.clientcore import RoomJoined, RoomError
from gamesession.protocol.datagram import Drop, Kind

ROOM_TYPE = "bench"
# seq, send time (perf_counter_ns), sender's room index, sender's bot index
STAMP = struct.Struct("<QqII")
MIN_PAYLOAD = STAMP.size
DRAIN = 0.5  # seconds to wait for datagrams still in flight after sending stops
BATCH = 256  # datagrams per sendmmsg / recvmmsg
BURST = 32  # datagrams sent at most per turn of the loop, or
BURST_SECONDS = 0.02  # this long's worth if more (turns take ~10 ms on a busy machine)
RCVBUF = 1 << 23
SPREAD_GROUPS = 25  # rooms created in this many groups when their creation is spread


class Tally:
    """What the receivers saw of the datagrams sent in the measured window."""

    def __init__(self, room_of, size):
        self.room_of = room_of  # bot index -> room index
        self.size = size
        self.window = (0, 0)
        self.sent = 0  # sent within the window
        self.unsent = 0
        self.delivered = 0
        self.leaks = 0
        self.misattributed = 0
        self.strays = 0  # not a bench datagram at all
        self.latencies = array("q")
        self.socket_drops = {}
        self.loadgen_cpu = 0.0  # CPU seconds of the load generator in the window

    def received(self, bot: int, data: bytes, sender_bot, now: int) -> None:
        """``bot`` received ``data``; ``sender_bot`` is who the relay says sent it."""
        if len(data) < STAMP.size:
            self.strays += 1
            return
        _, sent_at, room, origin = STAMP.unpack_from(data)
        if room != self.room_of[bot] or self.room_of.get(origin) != room:
            self.leaks += 1
            return
        if sender_bot != origin:
            self.misattributed += 1
        start, end = self.window
        if start <= sent_at < end:
            self.delivered += 1
            self.latencies.append(now - sent_at)

    def figures(self, seconds: float, cpu: float) -> dict:
        expected = self.sent * (self.size - 1)
        result = {
            "sent": self.sent,
            "unsent": self.unsent,
            "delivered": self.delivered,
            "expected": expected,
            "sent_per_s": round(self.sent / seconds, 1),
            "delivered_per_s": round(self.delivered / seconds, 1),
            "expected_per_s": round(expected / seconds, 1),
            "loss": round(1 - self.delivered / expected, 5) if expected else None,
            "server_cpu": round(cpu / seconds, 3),
            "loadgen_cpu": round(self.loadgen_cpu / seconds, 3),
            # Server CPU per datagram delivered: comparable below saturation too.
            "server_us_per_delivery": round(cpu * 1e6 / self.delivered, 2)
            if self.delivered else None,
            "cross_room_leaks": self.leaks,
            "misattributed": self.misattributed,
            "strays": self.strays,
            # Datagrams the kernel dropped at full receive buffers, by socket.
            "socket_drops": self.socket_drops,
        }
        result.update(percentiles(self.latencies, (50, 99)))
        return result


def paced(make, send, poll, bots: int, rate: float, seconds: float, warmup: float, tally,
          server_pid, progress=None, label="", ports=()):
    """Send ``rate`` datagrams per second per bot (round robin over ``bots``) for
    warmup + seconds, polling for what arrives in between; then drain.

    ``make(bot, seq, now)`` builds one packet, ``send(packets)`` sends a batch
    and says how many went.  Returns the server's CPU seconds over the
    measured window; this process's go to ``tally.loadgen_cpu``.  ``ports``
    (name, local UDP port): the kernel's drops at those sockets over the run
    go to ``tally.socket_drops``.
    """
    drops0 = {name: procs.udp_drops(port) for name, port in ports}
    perf = time.perf_counter_ns
    total = bots * rate
    burst = max(BURST, int(total * BURST_SECONDS))
    start = perf()
    measure_from = start + int(warmup * 1e9)
    end = measure_from + int(seconds * 1e9)
    tally.window = (measure_from, end)
    cpu0 = gen0 = None
    seq = 0
    bot = 0
    next_report = start
    while True:
        now = perf()
        if now >= end:
            break
        if cpu0 is None and now >= measure_from:
            cpu0 = procs.cpu_seconds(server_pid)
            gen0 = _own_cpu()
        # After a stall (the generator waited for its core) never catch up in
        # one burst: a burst of hundreds overflows the server's receive
        # buffer at once, which no real set of players does.
        due = min(int((now - start) * total / 1e9), seq + burst)
        if due > seq:
            packets = []
            for n in range(seq, due):
                packets.append(make(bot, n, now))
                bot = (bot + 1) % bots
            sent = send(packets)
            tally.unsent += len(packets) - sent
            if measure_from <= now:
                tally.sent += sent
            seq = due
        poll(0.001)
        if progress is not None and now >= next_report:
            next_report = now + 250_000_000
            progress("{} {:.1f}/{:.0f}s {:,} delivered".format(
                label, max(0.0, (now - measure_from) / 1e9), seconds, tally.delivered))
    cpu = procs.cpu_seconds(server_pid) - (cpu0 if cpu0 is not None else 0.0)
    tally.loadgen_cpu = _own_cpu() - (gen0 if gen0 is not None else 0.0)
    drain_until = time.monotonic() + DRAIN
    while time.monotonic() < drain_until:
        poll(0.01)
    tally.socket_drops = {name: procs.udp_drops(port) - drops0[name] for name, port in ports}
    return cpu


def _own_cpu() -> float:
    used = os.times()
    return used.user + used.system


def receiver(sock, handle, also=None, every=0.05, max_batches=64):
    """A ``poll(timeout)`` that reads ``sock`` in batches (recvmmsg), at most
    ``max_batches`` a call, into ``handle(packet, now)``, and calls ``also()``
    every ``every`` seconds; and a ``send(packets)`` that sends in batches
    (sendmmsg).  Fewer batches a call keep the sender's pace smoother."""
    try:
        # Fan-out arrives K-1 times faster than it leaves: room for bursts
        # while another process holds the core (as far as net.core.rmem_max allows).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except OSError:
        pass
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    io = batcher(sock, BATCH)
    perf = time.perf_counter_ns
    last = [time.monotonic()]

    def poll(timeout):
        if poller.poll(int(timeout * 1000)):
            for _ in range(max_batches):
                packets = io.recv()
                if not packets:
                    break
                now = perf()
                for packet in packets:
                    handle(packet, now)
        if also is not None and time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            also()

    def send(packets):
        sent = 0
        for i in range(0, len(packets), BATCH):
            chunk = packets[i:i + BATCH]
            done = io.send(chunk)
            sent += done
            if done < len(chunk):
                break
        return sent

    return poll, send


def smooth_receiver(fleet, handle):
    """``receiver`` for a fleet's UDP socket that keeps the send pace smooth: one
    batch a call, and the fleet's own polling (TCP, keepalives) never reads the
    UDP socket, whose slow one-by-one path would hold the sender for tens of
    milliseconds at a time and then let it send a burst: bursts the server's
    receive buffer (~270 small datagrams by default) cannot hold."""
    return receiver(fleet.udp, handle, also=lambda: fleet.poll(0, udp=False), max_batches=1)


def _stamp(seq, now, room, bot, pad):
    return STAMP.pack(seq, now, room, bot) + pad


# -- through the real server ---------------------------------------------------------


class Seating:
    """Bots of one fleet seated in private rooms of ``size``: bot ``i`` is in room ``i // size``.

    ``seat(logins)`` adds whole rooms: the first login of each creates it
    (unlisted, ``size`` seats), the others join by id.  ``bots`` holds the
    seated logins by bot index (``login.slot``), ``room_ids`` room index ->
    room id, ``member_of`` bot index -> member id and ``bot_of`` (room index,
    member id) -> bot index.
    """

    def __init__(self, fleet, size, room_type=ROOM_TYPE):
        self.fleet = fleet
        self.size = size
        self.room_type = room_type
        self.bots = []
        self.room_of = {}
        self.room_ids = {}
        self.member_of = {}
        self.bot_of = {}
        self.refused = []
        fleet.on_event = self._event

    def _event(self, login, event):
        size = self.size
        if isinstance(event, RoomJoined):
            r = self.room_of[login.slot]
            self.room_ids[r] = event.room
            self.member_of[login.slot] = event.member
            self.bot_of[(r, event.member)] = login.slot
            if login.slot % size == 0:
                for other in self.bots[login.slot + 1:login.slot + size]:
                    self.fleet.send_frame(other, other.core.join_room(event.room)[1])
        elif isinstance(event, RoomError):
            self.refused.append("{} {}".format(event.code, event.reason))

    def seat(self, logins, spread_seconds=0.0) -> None:
        """Seat ``logins`` (a whole number of rooms) in new rooms; BenchError unless all get in.

        ``spread_seconds``: create the rooms in groups spread over that long
        (one tick period), as rooms created independently are, instead of all
        at once: a ticking room's ticks keep the phase of its creation, and
        rooms all created in one reactor turn would all tick in one turn.
        """
        from gamesession.bench.runner import BenchError

        size, fleet = self.size, self.fleet
        first = len(self.bots)
        for index, login in enumerate(logins, first):
            login.slot = index
            self.room_of[index] = index // size
        self.bots.extend(logins)
        count = len(self.bots)
        new_rooms = range(first // size, count // size)
        groups = max(1, min(len(new_rooms), SPREAD_GROUPS)) if spread_seconds else 1
        for group in range(groups):
            for r in new_rooms[group::groups]:
                creator = self.bots[r * size]
                fleet.send_frame(creator, creator.core.create_room(
                    self.room_type, max_members=size, listed=False)[1])
            if groups > 1:
                fleet.run(spread_seconds / groups)
        fleet.run(max(30.0, len(logins) / 20.0),
                  done=lambda: len(self.member_of) == count or bool(self.refused))
        if self.refused or len(self.member_of) < count:
            raise BenchError("only {} of {} bots got into their rooms: {}".format(
                len(self.member_of), count, "; ".join(self.refused[:3]) or "timed out"))
        fleet.run(0.3)  # let the presence events settle


def datagram_handler(fleet, relayed, stray):
    """A ``handle(packet, now)`` for ``receiver``: opens each packet with its bot's
    ClientCore, answers the server's keepalive PINGs as a client does, and
    calls ``relayed(login, RoomDatagram or None, now)`` for each ROOM_RELAY
    (``stray()`` for what is no bench datagram).  What the fleet itself reads
    between batches (``fleet.poll``) goes to ``relayed`` too."""
    udp = fleet.udp
    by_token = fleet.by_token

    def handle(packet, now):
        login = by_token.get(packet[:8])
        if login is None:
            stray()
            return
        try:
            kind, payload = login.core.datagram_received(packet)
        except Drop:
            stray()
            return
        if kind == Kind.ROOM_RELAY:
            relayed(login, login.core.room_relay(payload), now)
        elif kind == Kind.PING:
            try:
                udp.send(login.core.datagram(Kind.PONG, payload))
            except BlockingIOError:
                pass

    fleet.on_datagram = lambda login, kind, payload: kind == Kind.ROOM_RELAY and relayed(
        login, login.core.room_relay(payload), time.perf_counter_ns())
    return handle


def gamesession_phase(plan, progress, fleet):
    """Log in R*K bots, put them in R private rooms, run the load."""
    from gamesession.bench.runner import _login_fleet

    rooms, size = plan["rooms"], plan["size"]
    count = rooms * size
    _login_fleet(plan, "bot", count=count, concurrency=min(64, count), progress=progress,
                 fleet=fleet, timeout=max(60.0, count / 20.0))
    seating = Seating(fleet, size)
    seating.seat(fleet.ready[:count])
    result = relay_step(plan, progress, seating, "gamesession")
    result["ended_by_server"] = dict(fleet.ended)
    return result


def relay_step(plan, progress, seating, label, smooth=False):
    """Every seated bot sends ``plan["rate"]`` room datagrams a second to its room (all
    other members) for warmup + seconds; the Tally's figures.  ``smooth``: see
    ``smooth_receiver``."""
    fleet = seating.fleet
    bots, room_of, room_ids = seating.bots, seating.room_of, seating.room_ids
    bot_of = seating.bot_of
    tally = Tally(room_of, seating.size)
    pad = bytes(plan["payload"] - STAMP.size)
    udp = fleet.udp

    def relayed(login, event, now):
        if event is None:
            tally.strays += 1
            return
        tally.received(login.slot, event.data, bot_of.get((room_of[login.slot], event.sender)), now)

    def stray():
        tally.strays += 1

    handle = datagram_handler(fleet, relayed, stray)
    if smooth:
        poll, send = smooth_receiver(fleet, handle)
    else:
        poll, send = receiver(udp, handle, also=lambda: fleet.poll(0))

    def make(bot, seq, now):
        r = room_of[bot]
        return bots[bot].core.room_datagram(room_ids[r], _stamp(seq, now, r, bot, pad))

    cpu = paced(make, send, poll, len(bots), plan["rate"], plan["seconds"], plan["warmup"], tally,
                plan["server_pid"], progress, label,
                ports=(("server", plan["udp_port"]), ("loadgen", udp.getsockname()[1])))
    result = tally.figures(plan["seconds"], cpu)
    result["unknown_room_datagrams"] = sum(b.core.unknown_room_datagrams for b in bots)
    return result


# -- through the plain relay ----------------------------------------------------------


def baseline_phase(plan, progress):
    rooms, size = plan["rooms"], plan["size"]
    count = rooms * size
    sock = udp_socket("127.0.0.1", plan["relay_port"])
    room_of = {i: i // size for i in range(count)}
    # Member ids are global here (bot + 1): the relay's R header names the receiver.
    for _ in range(3):  # joins are datagrams too: say them thrice
        for bot in range(count):
            sock.send(b"J" + struct.pack("<II", room_of[bot], bot + 1))
        time.sleep(0.05)
    tally = Tally(room_of, size)
    pad = bytes(plan["payload"] - STAMP.size)

    def handle(packet, now):
        if len(packet) < 9 or packet[:1] != b"R":
            tally.strays += 1
            return
        receiver_bot = int.from_bytes(packet[1:5], "little") - 1
        if receiver_bot not in room_of:
            tally.strays += 1
            return
        tally.received(receiver_bot, packet[9:], int.from_bytes(packet[5:9], "little") - 1, now)

    poll, send = receiver(sock, handle)

    def make(bot, seq, now):
        r = room_of[bot]
        return b"D" + struct.pack("<II", r, bot + 1) + _stamp(seq, now, r, bot, pad)

    cpu = paced(make, send, poll, count, plan["rate"], plan["seconds"], plan["warmup"], tally,
                plan["relay_pid"], progress, "baseline",
                ports=(("server", plan["relay_port"]), ("loadgen", sock.getsockname()[1])))
    sock.close()
    return tally.figures(plan["seconds"], cpu)


def rooms_job(plan, progress):
    """The load generator's side: the baseline first, then the real server."""
    from gamesession.bench.loadgen import Fleet

    baseline = baseline_phase(plan, progress)
    fleet = Fleet("127.0.0.1", plan["login_port"], plan["udp_port"], plan["server_key"])
    try:
        gamesession = gamesession_phase(plan, progress, fleet)
    finally:
        fleet.close_all()
    return {"gamesession": gamesession, "baseline": baseline}


# -- the parent side --------------------------------------------------------------------


def bench_rooms(rooms: int, size: int, rate: float, seconds: float, payload: int = 64,
                warmup: float = 0.5, progress=None, udp_rcvbuf=None) -> dict:
    """Run ``bench rooms``; the result dict (see the module docstring)."""
    from gamesession.bench import runner

    if rooms < 1 or size < 2 or rate <= 0 or seconds <= 0:
        raise runner.BenchError("--rooms must be at least 1, --size at least 2, "
                                "--rate and --seconds above 0")
    if payload < MIN_PAYLOAD:
        raise runner.BenchError("--payload must be at least {} bytes".format(MIN_PAYLOAD))
    progress = progress or runner.Progress()
    count = rooms * size
    wanted = count + 256
    procs.raise_nofile(wanted)
    settings = {"rooms": rooms, "size": size, "rate": rate, "seconds": seconds,
                "payload": payload, "warmup": warmup}
    with runner.Bench(progress) as bench:
        result = bench.header("rooms", dict(settings, udp_rcvbuf=udp_rcvbuf))
        load_before = runner.loadavg()
        # --udp-rcvbuf: the same receive buffer for the server and the baseline relay.
        relay = bench.echo("gamesession.bench.relay", rcvbuf=udp_rcvbuf)
        server = bench.gamesession(*server_options(rooms, size, rate, udp_rcvbuf), nofile=wanted)
        plan = bench.plan(server, relay_port=relay.udp_port, relay_pid=relay.pid, nofile=wanted,
                          **settings)
        timeout = 4 * (2 * (seconds + warmup + DRAIN)) + max(60.0, count / 10.0) + 60
        detail = runner.run_loadgen(rooms_job, plan, progress, timeout)
        result["server_log_tracebacks"] = bench.server_log_problems(server)
    gs, base = detail["gamesession"], detail["baseline"]
    result.update({key: gs[key] for key in (
        "delivered_per_s", "expected_per_s", "loss", "p50_us", "p99_us", "server_cpu",
        "server_us_per_delivery", "cross_room_leaks", "misattributed")})
    result.update({
        "target_sends_per_s": rooms * size * rate,
        "notes": notes(gs, base, rooms * size * rate),
        "baseline_delivered_per_s": base["delivered_per_s"],
        "baseline_server_us_per_delivery": base["server_us_per_delivery"],
        "baseline_loss": base["loss"],
        "baseline_p50_us": base["p50_us"],
        "baseline_p99_us": base["p99_us"],
        "baseline_server_cpu": base["server_cpu"],
        "ratio": round(gs["delivered_per_s"] / base["delivered_per_s"], 3)
        if base["delivered_per_s"] else None,
        "loadgen_cpu_seconds": detail.get("loadgen_cpu_seconds"),
        "detail": detail,
        "load_before": load_before,
        "load_after": runner.loadavg(),
    })
    return result


def notes(gs: dict, base: dict, target: float) -> list:
    """Warnings about what limited a run (the generator, not the server, on a busy machine)."""
    out = []
    for name, phase in (("gamesession", gs), ("baseline", base)):
        if phase["sent_per_s"] < 0.95 * target:
            out.append("{}: the load generator sent {:,.0f}/s of the {:,.0f}/s asked for".format(
                name, phase["sent_per_s"], target))
        if (phase["loss"] or 0) > 0.01 and phase["server_cpu"] < 0.8:
            drops = phase.get("socket_drops") or {}
            out.append("{}: {:.1%} lost while the server used {} of a core: the load generator "
                       "(or the machine) was the limit, not the server (kernel drops at full "
                       "receive buffers: server {}, load generator {})".format(
                           name, phase["loss"], phase["server_cpu"], drops.get("server", "?"),
                           drops.get("loadgen", "?")))
    return out


def server_options(rooms: int, size: int, rate: float, udp_rcvbuf=None) -> tuple:
    """The server's limits raised above the benchmark's load (each still enforced),
    and its ``--udp-rcvbuf`` when the bench was given one."""
    return (
        "--max-sessions", str(rooms * size + 16),
        "--max-rooms", str(rooms + 16),
        "--max-room-members", str(max(size, 2)),
        "--max-relay-rate", str(int(rate * size * 4) + 1000),
    ) + (("--udp-rcvbuf", str(udp_rcvbuf)) if udp_rcvbuf else ())


def summary_rows(result: dict) -> list:
    """The rows of the summary table ``runner.summary`` prints for this benchmark."""
    s = result["settings"]
    return [
        ("rooms x size @ rate", "{} x {} @ {:g}/s, payload {} B".format(
            s["rooms"], s["size"], s["rate"], s["payload"])),
        ("udp receive buffer", "{:,} bytes asked for, server and relay".format(s["udp_rcvbuf"])
         if s.get("udp_rcvbuf") else "the OS default"),
        ("delivered/s", "{:,.0f} of {:,.0f} expected | baseline {:,.0f}".format(
            result["delivered_per_s"], result["expected_per_s"],
            result["baseline_delivered_per_s"])),
        ("ratio", "-" if result["ratio"] is None else "{:.3f}".format(result["ratio"])),
        ("loss", "{} | baseline {}".format(result["loss"], result["baseline_loss"])),
        ("latency p50/p99 (us)", "{} / {} | baseline {} / {}".format(
            result["p50_us"], result["p99_us"], result["baseline_p50_us"],
            result["baseline_p99_us"])),
        ("server cpu (cores)", "{} | baseline {}".format(result["server_cpu"],
                                                        result["baseline_server_cpu"])),
        ("server cpu per delivery (us)", "{} | baseline {}".format(
            result["server_us_per_delivery"], result["baseline_server_us_per_delivery"])),
        ("cross_room_leaks", str(result["cross_room_leaks"])),
        ("misattributed", str(result["misattributed"])),
    ] + [("note", note) for note in result["notes"]]
