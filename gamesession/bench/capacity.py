"""``gamesession bench capacity``: how many players at HZ, in rooms of K, one server core holds.

The server (the real ``twistd gamesession``, pinned to one core) gets bot
players in whole rooms of ``--room-size``, step by step: ``--start`` players,
then ``--factor`` times more (or ``--step`` more) each step, up to
``--max-players``.  Bots of earlier steps stay logged in and seated; each step
logs in and seats only the new ones, then measures every bot for ``--seconds``
(after a short warm-up).  The ramp stops at the first step that fails a limit;
``players_per_core`` is the largest step that held both limits, divided by the
server's cores (1: it is pinned to one).

Modes:

* ``tick`` (the default, the authoritative model): the rooms run
  ``gamesession.bench.tickroom.SnapshotRoom`` ticking at ``--rate``.  Every bot
  sends one input (sequence number + state) per 1/rate, paced over the whole
  fleet; each tick the room sends every member one snapshot (every member's
  state, the receiver's last processed input sequence and the server's clock).
* ``relay``: the plain relay of ``bench rooms``: every bot sends ``--rate``
  room datagrams a second, each relayed to the other K-1 members.

Definitions (tick):

* ``latency`` of an input: the server's share of the time from the input to
  the snapshot that acknowledges it.  ``input_to_snapshot`` (sent to the
  receipt of the first snapshot whose ack >= its sequence) includes the wait
  for the room's next tick, up to 1/rate by design (50 ms at 20 Hz), so its
  p99 is about 1/rate at any load: no server can pass 20 ms on it.  So
  ``latency`` = ``input_delay`` (sent at t to its arrival at the room, A: the
  snapshot's ``ack_arrived``) + ``tick_lateness`` (how late that snapshot's
  tick ran against the room's schedule, the earliest tick seen at its phase
  during the warm-up and since) + ``snapshot_delay`` (the tick's server time
  T to the snapshot's receipt r): everything but the wait for the tick.  The
  server and the bots share the machine's clock.  An input overtaken by a
  later one before any snapshot acknowledged it (lost on the way, or two
  arrived in one tick) counts from the room's first tick after it was sent
  (that the bot saw) to its acknowledgement, so a lost input costs the ticks
  it missed.  For reference: ``first_tick_latency`` (r minus the first tick
  after t, for every input; an input that arrives just after a tick counts
  a whole period) and ``inputs_missed_tick`` (its fraction of inputs not
  acknowledged by the first tick after they were sent).  The bots send in an
  order (``spread``) that spreads each room's members over the period, and
  the rooms are created spread over one period, so that ticks and inputs
  fall at independent phases, as with real players and rooms.
* ``loss`` = the larger of ``snapshot_loss`` = 1 - snapshots received in the
  window / (players x rate x seconds) (a missing, dropped or skipped tick
  counts) and ``input_loss`` = inputs sent in the window that no snapshot
  acknowledged by the end of the drain / inputs sent (an input lost on the
  way but overtaken by a later one is acknowledged by it: its cost shows in
  the latency instead, as in a real game).

Definitions (relay): ``loss`` = 1 - delivered / (sent x (K-1)), ``latency``
is send-to-receive at another member (``bench rooms``' figures).

Limits: a step passes with ``loss`` <= ``--max-loss`` (1 %) and p99
``latency`` <= ``--max-p99-ms`` (20 ms).  A failing step is measured again,
up to ``--rounds`` times (2): one stall from another process on a shared
machine should not end the ramp; the first round that passes counts, else
the one nearest to passing.  A step is *generator-bound* when the load
generator, not the server, was the limit: it sent less than 95 % of the
asked rate, or it failed with the generator using 90 % of its core or more,
or with the kernel dropping at least half of what was lost at the
generator's own socket; then the ramp ends there, the result says so
(``generator_bound``, ``limited_by: generator``) and ``players_per_core``
is a lower bound of the server's, not its measure.
"""

import time
from array import array
from collections import deque

from gamesession.bench import procs
from gamesession.bench.loadgen import percentiles
from gamesession.bench.rooms import (DRAIN, MIN_PAYLOAD, ROOM_TYPE, Seating, datagram_handler,
                                     paced, relay_step, server_options, smooth_receiver)
from gamesession.bench.tickroom import INPUT, SNAPSHOT_HEADER, STATE_SIZE
from gamesession.protocol.rooms import MAX_ROOM_DATAGRAM

MODES = ("tick", "relay")
MAX_LOSS = 0.01
MAX_P99_MS = 20.0
GENERATOR_BUSY = 0.9  # cores of the load generator's one that make it the suspect
SENT_ENOUGH = 0.95  # of the asked send rate
MAX_TICK_RATE = 60  # the server's --room-tick limit
HANDLER = "gamesession.bench.tickroom.SnapshotRoom"
_STATE = bytes(range(STATE_SIZE))
TICKS_KEPT = 8  # the ticks a bot remembers to find an input's first one


# -- the ramp and its verdicts (pure) ----------------------------------------------------


def ramp(start: int, size: int, max_players: int, factor: float = 1.25, step: int = 0) -> list:
    """The player counts of the ramp: whole rooms of ``size``, from ``start``
    (rounded up to a room, at least one room) growing by ``step`` players if
    given, else by ``factor``, always by at least one room, to ``max_players``
    (rounded down to a room; at least the first step)."""
    def whole(players):
        return -(-players // size) * size

    top = max(size, max_players // size * size)
    players = min(max(size, whole(start)), top)
    out = [players]
    while players < top:
        grown = players + step if step else int(players * factor)
        players = min(max(players + size, whole(grown)), top)
        out.append(players)
    return out


def judge(step: dict, max_loss: float = MAX_LOSS, max_p99_ms: float = MAX_P99_MS) -> dict:
    """The verdict on one step's figures: ``passed``, ``failed`` (the limits it broke)
    and ``generator_bound`` (the load generator was the limit, see the module doc).

    ``step`` needs ``loss``, ``p99_us``, ``sent_per_s``, ``asked_per_s`` and
    ``loadgen_cpu`` (cores of the measured window); ``lost`` (datagrams) and
    ``socket_drops`` (``loadgen``: the kernel's drops at the generator's
    socket) if known.  A missing figure (nothing measured) fails its limit.
    """
    failed = []
    if step.get("loss") is None or step["loss"] > max_loss:
        failed.append("loss")
    if step.get("p99_us") is None or step["p99_us"] > max_p99_ms * 1000:
        failed.append("p99")
    short = step["sent_per_s"] < SENT_ENOUGH * step["asked_per_s"]
    busy = (step.get("loadgen_cpu") or 0) >= GENERATOR_BUSY
    # The kernel dropped at the load generator's socket (it did not read in
    # time) at least half of what was lost.
    dropped_here = (step.get("socket_drops") or {}).get("loadgen") or 0
    own_drops = "loss" in failed and dropped_here >= 0.5 * (step.get("lost") or 0) > 0
    return {"passed": not failed, "failed": failed,
            "generator_bound": short or (bool(failed) and (busy or own_drops))}


def conclude(steps: list, cores: int) -> dict:
    """``players_per_core`` and why the ramp ended, from the judged steps in order.

    The players held are the last step that passed before the first step that
    failed or was generator-bound (a generator-bound step never counts: the
    server did not get the load asked for).  ``limited_by``: ``server`` (a
    step failed with the generator keeping up), ``generator`` (the ramp ended
    at a generator-bound step: a lower bound of the server's capacity),
    ``max_players`` (every step passed: a lower bound too; ``bench_capacity``
    says ``stopped`` instead when bots could not be logged in or seated).
    ``players_per_core`` is None when no step passed.
    """
    best = None
    limited_by = "max_players"
    for step in steps:
        if step["generator_bound"]:
            limited_by = "generator"
            break
        if not step["passed"]:
            limited_by = "server"
            break
        best = step["players"]
    return {
        "players_held": best,
        "players_per_core": None if best is None else round(best / cores, 1),
        "limited_by": limited_by,
        "generator_bound": limited_by == "generator",
        "lower_bound": limited_by != "server",
    }


# -- the tick mode's measurement (load generator side) ------------------------------------


class TickTally:
    """What the bots saw of their inputs and of the snapshots in the measured window.

    ``seq`` (bot index -> last input sequence sent) outlives a step: the room
    ignores inputs not above the last, so every step goes on counting.
    Times are perf_counter_ns; the server's (wall clock seconds) become that
    with ``offset_ns`` = time.time_ns() - time.perf_counter_ns().
    """

    def __init__(self, bots: int, size: int, seq: list, offset_ns: int, rate: float):
        self.size = size
        self.seq = seq
        self.offset_ns = offset_ns
        self.period_ns = int(1e9 / rate)
        self.window = (0, 0)
        self.pending = [deque() for _ in range(bots)]  # (seq, sent at) in the window, unacked
        self.ticks = [deque(maxlen=TICKS_KEPT) for _ in range(bots)]  # recent snapshots' ticks
        self.phase_ref = [None] * bots  # a tick of the bot's room: the schedule's phase
        self.phase_min = [0] * bots  # the earliest a tick ran against that phase
        self.sent = 0
        self.unsent = 0
        self.delivered = 0  # snapshots received in the window
        self.acked = 0
        self.superseded = 0  # acked only by a later input's ack (lost, or two in one tick)
        self.missed_tick = 0  # acked, but not by the first tick after they were sent
        self.strays = 0
        self.malformed = 0
        self.wrong_members = 0  # snapshots whose member count is not the room's
        self.acks_beyond_sent = 0  # acks of an input never sent: must stay 0
        self.latencies = array("q")  # the judged latency, one per acked input
        self.input_delays = array("q")  # sent to arrived at the room
        self.first_tick_latencies = array("q")  # first tick after sending to receipt
        self.input_to_snapshot = array("q")
        self.snapshot_delays = array("q")  # tick to receipt, every snapshot in the window
        self.tick_lateness = array("q")  # how late each tick ran against its schedule
        self.socket_drops = {}
        self.loadgen_cpu = 0.0

    def input(self, bot: int, now: int) -> bytes:
        """The next input of ``bot`` (sent at ``now``), remembered if in the window."""
        seq = self.seq[bot] + 1
        self.seq[bot] = seq
        start, end = self.window
        if start <= now < end:
            self.pending[bot].append((seq, now))
        return INPUT.pack(seq) + _STATE

    def lateness(self, bot: int, tick_at: int) -> int:
        """How late a tick of ``bot``'s room ran: a room ticks at a fixed phase of
        its period (a LoopingCall); lateness is its offset from the earliest tick
        seen at that phase (the warm-up's ticks set it)."""
        period = self.period_ns
        ref = self.phase_ref[bot]
        if ref is None:
            self.phase_ref[bot] = ref = tick_at
        offset = (tick_at - ref + period // 2) % period - period // 2
        if offset < self.phase_min[bot]:
            self.phase_min[bot] = offset
        return offset - self.phase_min[bot]

    def snapshot(self, bot: int, data: bytes, now: int) -> None:
        """``bot`` received snapshot ``data`` at ``now``."""
        if len(data) < SNAPSHOT_HEADER.size:
            self.malformed += 1
            return
        _, server_time, ack, ack_arrived, count = SNAPSHOT_HEADER.unpack_from(data)
        offset = self.offset_ns
        tick_at = int(server_time * 1e9) - offset
        late = self.lateness(bot, tick_at)
        start, end = self.window
        if start <= now < end:
            self.delivered += 1
            self.snapshot_delays.append(now - tick_at)
            self.tick_lateness.append(late)
        if count != self.size:
            self.wrong_members += 1
        if ack > self.seq[bot]:
            self.acks_beyond_sent += 1
        ticks = self.ticks[bot]
        pending = self.pending[bot]
        while pending and pending[0][0] <= ack:
            seq, sent_at = pending.popleft()
            self.acked += 1
            self.input_to_snapshot.append(now - sent_at)
            # The room's first tick after the input was sent, as far as this bot saw.
            if not ticks or ticks[-1] < sent_at:
                first = tick_at  # the usual case: this snapshot's tick
            else:
                first = next(t for t in ticks if t >= sent_at)
                self.missed_tick += 1
            since_first = now - max(first, sent_at)
            self.first_tick_latencies.append(since_first)
            if seq == ack:
                # The room says when it arrived: its way in, plus the tick's
                # lateness, plus the snapshot's way back.
                waited_in = max(0, int(ack_arrived * 1e9) - offset - sent_at)
                self.input_delays.append(waited_in)
                self.latencies.append(waited_in + late + now - tick_at)
            else:
                # Overtaken: lost on the way (it then waited for the next
                # input's tick), or two arrived for one tick.
                self.superseded += 1
                self.latencies.append(since_first)
        ticks.append(tick_at)

    def figures(self, seconds: float, cpu: float, players: int, rate: float) -> dict:
        expected = players * rate * seconds
        unacked = sum(len(p) for p in self.pending)
        snapshot_loss = max(0.0, 1 - self.delivered / expected) if expected else None
        input_loss = unacked / self.sent if self.sent else None
        losses = [x for x in (snapshot_loss, input_loss) if x is not None]
        result = {
            "sent": self.sent,
            "unsent": self.unsent,
            "sent_per_s": round(self.sent / seconds, 1),
            "snapshots": self.delivered,
            "snapshots_expected": round(expected),
            "snapshots_per_s": round(self.delivered / seconds, 1),
            "inputs_acked": self.acked,
            "inputs_unacked": unacked,
            "inputs_missed_tick": round(self.missed_tick / self.acked, 5) if self.acked else None,
            "inputs_superseded": self.superseded,
            "snapshot_loss": None if snapshot_loss is None else round(snapshot_loss, 5),
            "input_loss": None if input_loss is None else round(input_loss, 5),
            "loss": round(max(losses), 5) if losses else None,
            "server_cpu": round(cpu / seconds, 3),
            "loadgen_cpu": round(self.loadgen_cpu / seconds, 3),
            "server_us_per_player_tick": round(cpu * 1e6 / expected, 2) if expected else None,
            "strays": self.strays,
            "malformed": self.malformed,
            "wrong_members": self.wrong_members,
            "acks_beyond_sent": self.acks_beyond_sent,
            "socket_drops": self.socket_drops,
        }
        result.update(percentiles(self.latencies, (50, 99)))
        for name, samples in (("input_delay_", self.input_delays),
                              ("tick_lateness_", self.tick_lateness),
                              ("snapshot_delay_", self.snapshot_delays),
                              ("first_tick_latency_", self.first_tick_latencies),
                              ("input_to_snapshot_", self.input_to_snapshot)):
            result.update({name + k: v for k, v in percentiles(samples, (50, 99)).items()})
        return result


def spread(players: int, size: int) -> list:
    """The order bots send in over each 1/rate: one member of every room, then the
    next member of every room, ...  So the members of a room send spread over the
    period, as real players do, not all within a millisecond: otherwise a whole
    room's inputs would land just before (or just after) its tick together, and a
    few rooms' phases would decide whether 1 % of the inputs miss their tick."""
    rooms = players // size
    return [(turn % rooms) * size + turn // rooms for turn in range(rooms * size)]


def tick_step(plan, progress, seating, seq, label):
    """Every seated bot sends ``plan["rate"]`` inputs a second for warmup + seconds; the figures."""
    fleet = seating.fleet
    bots, room_of, room_ids = seating.bots, seating.room_of, seating.room_ids
    seq.extend([0] * (len(bots) - len(seq)))
    offset = time.time_ns() - time.perf_counter_ns()
    tally = TickTally(len(bots), seating.size, seq, offset, plan["rate"])

    def relayed(login, event, now):
        if event is None or event.sender != 0:
            tally.strays += 1
            return
        tally.snapshot(login.slot, event.data, now)

    def stray():
        tally.strays += 1

    handle = datagram_handler(fleet, relayed, stray)
    udp = fleet.udp
    poll, send = smooth_receiver(fleet, handle)

    order = spread(len(bots), seating.size)

    def make(turn, n, now):
        bot = order[turn]
        return bots[bot].core.room_datagram(room_ids[room_of[bot]], tally.input(bot, now))

    cpu = paced(make, send, poll, len(bots), plan["rate"], plan["seconds"], plan["warmup"], tally,
                plan["server_pid"], progress, label,
                ports=(("server", plan["udp_port"]), ("loadgen", udp.getsockname()[1])))
    result = tally.figures(plan["seconds"], cpu, len(bots), plan["rate"])
    result["unknown_room_datagrams"] = sum(b.core.unknown_room_datagrams for b in bots)
    return result


def measure_step(plan, progress, seating, seq, label) -> dict:
    """One measurement of every seated bot, with its verdict."""
    from gamesession.bench.runner import _stalls, longest_stall_ms

    fleet = seating.fleet
    players = len(seating.bots)
    stalls0 = _stalls(plan)
    if plan["mode"] == "tick":
        figures = tick_step(plan, progress, seating, seq, label)
        lost = figures["snapshots_expected"] - figures["snapshots"]
    else:
        figures = relay_step(plan, progress, seating, label, smooth=True)
        lost = figures["expected"] - figures["delivered"]
    fleet.on_datagram = None  # until the next measurement: what arrives is not counted
    figures.update({
        "players": players,
        "rooms": players // plan["size"],
        "asked_per_s": round(players * plan["rate"], 1),
        "lost": max(0, lost),
        "max_stall_ms": longest_stall_ms(stalls0, _stalls(plan)),
        "ended_by_server": sum(fleet.ended.values()),
    })
    figures.update(judge(figures, plan["max_loss"], plan["max_p99_ms"]))
    progress("{}: loss {} p99 {} us server cpu {} -> {}".format(
        label, figures["loss"], figures["p99_us"], figures["server_cpu"],
        "pass" if figures["passed"] else "FAIL " + "+".join(figures["failed"])))
    return figures


def best_round(rounds: list, max_loss: float = MAX_LOSS, max_p99_ms: float = MAX_P99_MS) -> dict:
    """The round of a step that counts: the first that passed with the generator
    keeping up; else the one nearest to passing, generator-bound ones last
    (nearest: the larger of loss and p99 as fractions of their limits); with
    ``rounds`` (how many ran) and ``rounds_passed`` added."""
    def key(step):
        if step.get("loss") is None or step.get("p99_us") is None:
            return step["generator_bound"], float("inf")
        return step["generator_bound"], max(step["loss"] / max(max_loss, 1e-9),
                                            step["p99_us"] / (max_p99_ms * 1000))

    held = [step for step in rounds if step["passed"] and not step["generator_bound"]]
    best = dict(held[0] if held else min(rounds, key=key))
    best["rounds"] = len(rounds)
    best["rounds_passed"] = len(held)
    return best


def capacity_job(plan, progress):
    """The load generator's side: the ramp, step by step, until a step fails
    ``plan["rounds"]`` times in a row (or is generator-bound)."""
    from gamesession.bench.loadgen import Fleet
    from gamesession.bench.runner import HOST, BenchError, _login_fleet

    stopped = None
    fleet = Fleet(HOST, plan["login_port"], plan["udp_port"], plan["server_key"])
    seating = Seating(fleet, plan["size"], ROOM_TYPE)
    seq = []
    steps = []
    try:
        for n, players in enumerate(plan["ramp"]):
            label = "{} players".format(players)
            more = players - len(seating.bots)
            before = len(fleet.ready)
            try:
                _login_fleet(plan, "c{}_".format(n), count=more, concurrency=min(256, more),
                             progress=progress, fleet=fleet, timeout=max(60.0, more / 20.0))
                progress("{}: seating {} new bots in rooms of {}".format(
                    label, more, plan["size"]))
                seating.seat(fleet.ready[before:before + more],
                             spread_seconds=1.0 / plan["rate"] if plan["mode"] == "tick" else 0)
            except BenchError as e:
                # Keep the curve so far: the steps measured still stand.
                stopped = "the ramp stopped before {} players: {}".format(players, e)
                break
            rounds = []
            for r in range(plan["rounds"]):
                tag = label + (" round {}/{}".format(r + 1, plan["rounds"]) if r else "")
                rounds.append(measure_step(plan, progress, seating, seq, tag))
                if rounds[-1]["passed"] and not rounds[-1]["generator_bound"]:
                    break
            figures = best_round(rounds, plan["max_loss"], plan["max_p99_ms"])
            steps.append(figures)
            if not figures["passed"] or figures["generator_bound"]:
                break
    finally:
        fleet.close_all()
    return {"steps": steps, "stopped": stopped}


# -- the parent side ----------------------------------------------------------------------


def bench_capacity(mode="tick", rate=20.0, size=8, start=200, factor=1.25, step=0,
                   max_players=16000, seconds=5.0, warmup=1.0, payload=64,
                   max_loss=MAX_LOSS, max_p99_ms=MAX_P99_MS, rounds=2, udp_io="auto",
                   udp_rcvbuf=None, progress=None) -> dict:
    """Run ``bench capacity``; the result dict (see the module docstring)."""
    from gamesession.bench import runner

    if mode not in MODES:
        raise runner.BenchError("--mode must be one of {}".format(", ".join(MODES)))
    if size < 2:
        raise runner.BenchError("--room-size must be at least 2")
    if mode == "tick" and rate > MAX_TICK_RATE:
        raise runner.BenchError("--rate is at most {} in tick mode (the server's --room-tick "
                                "limit)".format(MAX_TICK_RATE))
    if mode == "relay" and not MIN_PAYLOAD <= payload <= MAX_ROOM_DATAGRAM:
        raise runner.BenchError("--payload must be {} to {} bytes".format(
            MIN_PAYLOAD, MAX_ROOM_DATAGRAM))
    if factor <= 1 and not step:
        raise runner.BenchError("--factor must be above 1 (or give --step)")
    progress = progress or runner.Progress()
    notes = []
    wanted = max_players + 512
    soft, hard = procs.raise_nofile(wanted)
    if soft < wanted:
        usable = max(size, soft - 512)
        notes.append("RLIMIT_NOFILE hard limit {} is too low for {} players (each holds one fd "
                     "in the server and one in the load generator); ramped to {} at most"
                     .format(hard, max_players, usable))
        max_players = usable
        wanted = soft
    steps = ramp(start, size, max_players, factor, step)
    max_players = steps[-1]
    settings = {"mode": mode, "rate": rate, "room_size": size, "start": steps[0],
                "factor": None if step else factor, "step": step or None,
                "max_players": max_players, "seconds": seconds, "warmup": warmup,
                "payload": payload if mode == "relay" else None,
                "max_loss": max_loss, "max_p99_ms": max_p99_ms, "rounds": rounds, "udp_io": udp_io,
                "udp_rcvbuf": udp_rcvbuf, "ramp": steps}
    options = server_options(max_players // size, size, rate, udp_rcvbuf) + ("--stall-probe",)
    if mode == "tick":
        options += ("--room", "{}={}".format(ROOM_TYPE, HANDLER),
                    "--room-tick", "{}={:g}".format(ROOM_TYPE, rate))
    with runner.Bench(progress, udp_io) as bench:
        result = bench.header("capacity", settings)
        load_before = runner.loadavg()
        metrics_port = procs.free_port()
        server = bench.gamesession(*options, "--metrics", "tcp:{}:interface={}".format(
            metrics_port, runner.HOST), nofile=wanted)
        plan = bench.plan(server, nofile=wanted, mode=mode, rate=rate, size=size, ramp=steps,
                          seconds=seconds, warmup=warmup, payload=payload, max_loss=max_loss,
                          max_p99_ms=max_p99_ms, rounds=rounds,
                          metrics_url="http://{}:{}/metrics".format(runner.HOST, metrics_port))
        per_step = warmup + seconds + DRAIN + 2
        timeout = 4 * len(steps) * rounds * per_step + max(60.0, max_players / 10.0) + 60
        detail = runner.run_loadgen(capacity_job, plan, progress, timeout)
        result["server_log_tracebacks"] = bench.server_log_problems(server)
        result["udp_io"] = bench.udp_io(server)
        pinned = bench.server_cpu is not None
    # The server is one thread: one core at a time, pinned or not.
    cores = 1
    if not pinned:
        notes.append("the server was not pinned to a core of its own: it shared the machine "
                     "with the load generator")
    curve = detail["steps"]
    result.update(conclude(curve, cores))
    if detail.get("stopped"):
        notes.append(detail["stopped"])
        if result["limited_by"] == "max_players":
            result["limited_by"] = "stopped"
    result.update({
        "server_cores": cores,
        "curve": curve,
        "notes": notes + step_notes(curve),
        "loadgen_cpu_seconds": detail.get("loadgen_cpu_seconds"),
        "load_before": load_before,
        "load_after": runner.loadavg(),
    })
    return result


def step_notes(curve: list) -> list:
    """Why a step failed or was generator-bound, in words."""
    out = []
    for step in curve:
        if step["generator_bound"]:
            drops = step.get("socket_drops") or {}
            out.append("{} players: the load generator was the limit, not the server (it sent "
                       "{:,.0f}/s of {:,.0f}/s asked, used {} of its core{}; kernel drops at its "
                       "socket: {})".format(
                           step["players"], step["sent_per_s"], step["asked_per_s"],
                           step["loadgen_cpu"], ", so it did not get its core: the machine is "
                           "busy" if step["loadgen_cpu"] < 0.5 else "", drops.get("loadgen", "?")))
        elif not step["passed"]:
            drops = step.get("socket_drops") or {}
            out.append("{} players failed {} in {} rounds (server cpu {} cores{}; longest "
                       "reactor stall {} ms; kernel drops at full receive buffers: server {}, "
                       "load generator {})".format(
                           step["players"], " and ".join(step["failed"]), step.get("rounds", 1),
                           step["server_cpu"], ", far from a full core: not its capacity but other "
                           "processes on its core, or a stall" if step["server_cpu"] < 0.5 else "",
                           step.get("max_stall_ms"),
                           drops.get("server", "?"), drops.get("loadgen", "?")))
    return out


def summary_rows(result: dict) -> list:
    """The rows of the summary table ``runner.summary`` prints for this benchmark."""
    s = result["settings"]
    held = result["players_per_core"]
    rows = [
        ("mode, rooms of K @ rate", "{}, rooms of {} @ {:g} Hz".format(
            s["mode"], s["room_size"], s["rate"])),
        ("limits", "loss <= {:g} %, p99 <= {:g} ms".format(s["max_loss"] * 100, s["max_p99_ms"])),
        ("players_per_core", "-" if held is None else "{}{:,.0f}".format(
            ">= " if result["lower_bound"] else "", held)),
        ("limited by", result["limited_by"]),
    ]
    tick = s["mode"] == "tick"
    rows.append(("players: loss, p50/p99 us{}, server cpu, loadgen cpu, stall ms".format(
        " (input to snapshot p99)" if tick else ""), ""))
    for step in result["curve"]:
        verdict = "pass" if step["passed"] else "FAIL " + "+".join(step["failed"])
        if step["generator_bound"]:
            verdict += " (generator-bound)"
        rows.append(("  {:,}".format(step["players"]), "{}, {}/{}{}, {}, {}, {} -> {}".format(
            step["loss"], step["p50_us"], step["p99_us"],
            " ({})".format(step["input_to_snapshot_p99_us"]) if tick else "",
            step["server_cpu"], step["loadgen_cpu"], step["max_stall_ms"], verdict)))
    rows += [("note", note) for note in result["notes"]]
    return rows
