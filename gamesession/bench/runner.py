"""The ``gamesession bench`` commands: start servers, run the load generator, report.

The load generator runs in a forked child process pinned to the other core;
it sends progress lines and its result back over a queue, and the parent
shows them as one updating line on stderr, then prints a summary table and
writes the JSON file.
"""

import glob
import hashlib
import json
import multiprocessing
import os
import queue
import re
import sys
import tempfile
import time
import traceback

from gamesession.bench import procs
from gamesession.bench.loadgen import Fleet, blast, percentiles, udp_socket

HOST = "127.0.0.1"


class BenchError(Exception):
    """A benchmark that could not run; the message says why."""


class Progress:
    """Progress on stderr: one updating line on a terminal, plain lines otherwise.

    Not on a terminal (a log file, CI), ``\r`` would pile every update onto one
    line: then only the first and the last update of each phase (a phase is the
    text before its first digit) are printed, each on its own line.
    """

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.width = 0
        self.started = time.monotonic()
        try:
            self.terminal = self.stream.isatty()
        except (AttributeError, ValueError):
            self.terminal = False
        self.phase = None
        self.unprinted = None

    def show(self, text: str) -> None:
        line = "[{:5.1f}s] {}".format(time.monotonic() - self.started, text)
        if not self.terminal:
            phase = re.match(r"\D*", text).group().strip()
            if phase != self.phase:
                if self.unprinted is not None:  # how the previous phase ended
                    self.stream.write(self.unprinted + "\n")
                self.phase, self.unprinted = phase, None
                self.stream.write(line + "\n")
                self.stream.flush()
            else:
                self.unprinted = line
            return
        pad = max(0, self.width - len(line))
        self.width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def done(self) -> None:
        if not self.terminal:
            if self.unprinted is not None:
                self.stream.write(self.unprinted + "\n")
                self.stream.flush()
            self.phase = self.unprinted = None
            return
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


# -- the child side -------------------------------------------------------------


def _child_main(q, job, plan):
    procs.pin(plan.get("cpu"))
    procs.raise_nofile(plan.get("nofile", 0))

    def progress(text):
        q.put(("progress", text))

    try:
        started = os.times()
        result = job(plan, progress)
        used = os.times()
        result.setdefault("loadgen_cpu_seconds", round(
            (used.user + used.system) - (started.user + started.system), 2))
        q.put(("result", result))
    except BaseException as e:
        q.put(("error", "{}: {}\n{}".format(type(e).__name__, e, traceback.format_exc())))


def run_loadgen(job, plan, progress: Progress, timeout: float):
    """Run ``job(plan, progress)`` in a forked child; return its result dict."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_child_main, args=(q, job, plan), daemon=True)
    child.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                kind, value = q.get(timeout=0.5)
            except queue.Empty:
                if not child.is_alive():
                    raise BenchError("load generator died (exit {})".format(child.exitcode))
                if time.monotonic() > deadline:
                    raise BenchError("load generator did not finish within {:g} s".format(timeout))
                continue
            if kind == "progress":
                progress.show(value)
            elif kind == "result":
                return value
            else:
                raise BenchError("load generator failed: " + value)
    finally:
        child.join(2)
        if child.is_alive():
            child.kill()
            child.join()
        progress.done()


def _login_fleet(plan, user, count=1, concurrency=64, progress=None, fleet=None, timeout=60.0):
    """A fleet with ``count`` more ready sessions (logged in and pinged)."""
    if fleet is None:
        fleet = Fleet(HOST, plan["login_port"], plan["udp_port"], plan["server_key"])
    target = len(fleet.ready) + count
    started = [0]
    begin = time.monotonic()
    last = [begin]

    def top_up():
        while fleet.in_progress < concurrency and started[0] < count:
            fleet.start("{}{}".format(user, started[0]))
            started[0] += 1

    def tick():
        top_up()
        now = time.monotonic()
        if progress is not None and now - last[0] >= 0.25:
            last[0] = now
            done = len(fleet.ready)
            progress("logging in {:,}/{:,} sessions ({:,.0f}/s)".format(
                done, target, done / (now - begin)))

    top_up()
    fleet.run(timeout, done=lambda: len(fleet.ready) >= target
              or (fleet.in_progress == 0 and started[0] >= count), tick=tick)
    if len(fleet.ready) < target:
        raise BenchError("only {} of {} logins completed; failures: {}".format(
            len(fleet.ready), target, dict(fleet.failures) or "none (timed out)"))
    return fleet


def _server_cpu(pid, since, seconds):
    return round((procs.cpu_seconds(pid) - since) / seconds, 2) if seconds else None


def _measure(sock, plan, pid, progress, label, window, seconds, sessions=None, warmup=None):
    cpu0 = procs.cpu_seconds(pid)
    t0 = time.monotonic()
    result = blast(sock, seconds, plan["payload"], window, sessions=sessions,
                   warmup=plan["warmup"] if warmup is None else warmup,
                   progress=progress, label=label)
    result["server_cpu"] = _server_cpu(pid, cpu0, time.monotonic() - t0)
    return result


def udp_job(plan, progress):
    """Throughput rounds alternating baseline and gamesession, then one light-load RTT phase each."""
    echo_sock = udp_socket(HOST, plan["echo_port"])
    out = {"rounds": []}

    def gamesession_phase(label, window, seconds):
        # A fresh session for each phase: a session left silent while the
        # baseline runs would time out on the server.
        fleet = _login_fleet(plan, "bench{}".format(len(out["rounds"])), progress=progress)
        try:
            return _measure(fleet.udp, plan, plan["server_pid"], progress, label, window, seconds,
                            sessions=[fleet.ready[0].core])
        finally:
            fleet.close_all()

    rounds = plan["rounds"]
    for n in range(rounds):
        tag = "round {}/{}".format(n + 1, rounds) if rounds > 1 else "throughput"
        base = _measure(echo_sock, plan, plan["echo_pid"], progress, "baseline " + tag,
                        plan["window"], plan["seconds"])
        gs = gamesession_phase("gamesession " + tag, plan["window"], plan["seconds"])
        out["rounds"].append({"baseline": base, "gamesession": gs})
    out["baseline_light"] = _measure(echo_sock, plan, plan["echo_pid"], progress,
                                     "baseline light load", 1, plan["latency_seconds"])
    out["gamesession_light"] = gamesession_phase("gamesession light load", 1,
                                                 plan["latency_seconds"])
    echo_sock.close()
    return out


def login_job(plan, progress):
    fleet = Fleet(HOST, plan["login_port"], plan["udp_port"], plan["server_key"],
                  reset_on_close=True, keep_ready=False)
    users = plan["concurrency"]
    completed = []
    counting = [False]

    def restart(login, why=None):
        fleet.close(login)
        if counting[0] is not None:
            fleet.start("u{}".format(login.slot), slot=login.slot)

    def ready(login):
        if counting[0]:
            completed.append(1)
        restart(login)

    fleet.on_ready = ready
    fleet.on_failed = restart
    for slot in range(users):
        fleet.start("u{}".format(slot), slot=slot)
    fleet.run(plan["warmup"])
    fleet.latencies = fleet.latencies[:0]
    failures_before = sum(fleet.failures.values())
    counting[0] = True
    cpu0 = procs.cpu_seconds(plan["server_pid"])
    begin = time.monotonic()
    last = [begin]

    def tick():
        now = time.monotonic()
        if now - last[0] >= 0.25:
            last[0] = now
            progress("logins {:.1f}/{:.0f}s {:,} done ({:,.0f}/s)".format(
                now - begin, plan["seconds"], len(completed), len(completed) / (now - begin)))

    fleet.run(plan["seconds"], tick=tick)
    elapsed = time.monotonic() - begin
    counting[0] = None
    result = _login_figures(fleet, plan, len(completed), elapsed, cpu0, failures_before)
    result["seconds"] = round(elapsed, 3)
    return result


def _login_figures(fleet, plan, logins, seconds, cpu0, failures_before=0, prefix=""):
    """Figures of a login phase (named with ``prefix``); closes the fleet."""
    result = {
        "logins": logins,
        "logins_per_s": round(logins / seconds, 1),
        "failures": sum(fleet.failures.values()) - failures_before,
        "failure_kinds": dict(fleet.failures),
        "ping_retries": fleet.ping_retries,
        "server_cpu": _server_cpu(plan["server_pid"], cpu0, seconds),
    }
    result.update({"login_" + k: v for k, v in percentiles(fleet.latencies).items()})
    fleet.close_all()
    return {prefix + k: v for k, v in result.items()}


def _stalls(plan):
    """Cumulative buckets of the server's reactor stalls (``--stall-probe``), or None."""
    from gamesession.client import status

    if not plan.get("metrics_url"):
        return None
    figures = status.Figures(status.fetch(plan["metrics_url"]))
    return {"buckets": figures.buckets("reactor_stall_seconds"),
            "max": figures.get("reactor_stall_max_seconds")}


def longest_stall_ms(before, after):
    """Upper bound (ms) of the bucket of the longest stall between two scrapes.

    None without samples; ``inf`` when it was above every bucket.
    """
    if not before or not after:
        return None
    longest = None
    previous = 0
    for (bound, a), (_, b) in zip(after["buckets"], before["buckets"]):
        delta = a - b
        if delta > previous:
            longest = bound
        previous = delta
    return None if longest is None else round(longest * 1000, 1)


def storm_job(plan, progress):
    """``storm`` clients log in to a cold server, ``concurrency`` at a time; all must succeed."""
    fleet = Fleet(HOST, plan["login_port"], plan["udp_port"], plan["server_key"])
    count = plan["storm"]
    begin = time.monotonic()
    cpu0 = procs.cpu_seconds(plan["server_pid"])
    try:
        _login_fleet(plan, "s", count=count, concurrency=plan["storm_concurrency"],
                     progress=progress, fleet=fleet, timeout=max(60.0, count / 50.0))
    except BenchError as e:
        return {"storm_failed": str(e), "storm_failures": dict(fleet.failures)}
    seconds = time.monotonic() - begin
    result = _login_figures(fleet, plan, count, seconds, cpu0, prefix="storm_")
    result["storm_s"] = round(seconds, 2)
    return result


def _best_of(rounds, measure):
    runs = [measure(n) for n in range(rounds)]
    best = max(runs, key=lambda r: r["pps"])
    best = dict(best)
    best["rounds_pps"] = [r["pps"] for r in runs]
    return best


def sessions_job(plan, progress):
    """1 session: best of rounds; log in N-1 more; N sessions round-robin: best of rounds."""
    pid = plan["server_pid"]
    rounds = plan["rounds"]
    fleet = _login_fleet(plan, "s", count=1, progress=progress)

    def tag(n):
        return " round {}/{}".format(n + 1, rounds) if rounds > 1 else ""

    one = _best_of(rounds, lambda n: _measure(
        fleet.udp, plan, pid, progress, "1 session" + tag(n), plan["window"], plan["seconds"],
        sessions=[fleet.ready[0].core]))
    fleet.touch_all()
    fleet.run(0.3)
    rss_one = procs.rss_bytes(pid)
    stalls_start = _stalls(plan)
    extra = plan["sessions"] - 1
    begin = time.monotonic()
    if extra:
        _login_fleet(plan, "t", count=extra, concurrency=plan["concurrency"],
                     progress=progress, fleet=fleet, timeout=max(60.0, extra / 50.0))
    login_seconds = time.monotonic() - begin
    fleet.run(0.5)
    rss_many = procs.rss_bytes(pid)
    stalls_held = _stalls(plan)
    cores = [login.core for login in fleet.ready]

    # With all N held, alternate traffic over one of them and over all of
    # them: the pair shares the machine's conditions, so their ratio is the
    # steadier estimate of what spreading traffic over N sessions costs.
    runs = {"one_of_n": [], "many": []}
    for n in range(rounds):
        for name, subset, label in (("one_of_n", cores[:1], "1 of {:,} sessions"),
                                    ("many", cores, "{:,} sessions")):
            runs[name].append(_measure(fleet.udp, plan, pid, progress,
                                       label.format(len(cores)) + tag(n),
                                       plan["window"], plan["seconds"], sessions=subset))
            fleet.touch_all()
            fleet.run(0.2)
    many = _best_of(rounds, lambda n: runs["many"][n])
    one_of_n = _best_of(rounds, lambda n: runs["one_of_n"][n])
    fleet.run(0.3)
    rss_after = procs.rss_bytes(pid)
    stalls_end = _stalls(plan)
    alive = len(fleet.by_token)
    fleet.close_all()
    return {
        "sessions_held": len(cores),
        "sessions_alive_at_end": alive,
        "ended_by_server": dict(fleet.ended),
        "ping_retries": fleet.ping_retries,
        "login_seconds": round(login_seconds, 2),
        "rss_one_session": rss_one,
        "rss_all_sessions": rss_many,
        "rss_after_traffic": rss_after,
        "bytes_per_session": round((rss_many - rss_one) / extra, 1) if extra else None,
        "one": one,
        "many": many,
        "pps_one": one["pps"],
        "pps_many": many["pps"],
        "pps_ratio": round(many["pps"] / one["pps"], 3) if one["pps"] else None,
        "one_of_n": one_of_n,
        "pps_one_of_n": one_of_n["pps"],
        "pps_ratio_interleaved": round(many["pps"] / one_of_n["pps"], 3)
        if one_of_n["pps"] else None,
        # Longest reactor stall (upper bound of its bucket) while N sessions were held
        # and traffic ran, and while they logged in; the exact maximum since start.
        "max_stall_ms": longest_stall_ms(stalls_held, stalls_end),
        "max_stall_ms_logins": longest_stall_ms(stalls_start, stalls_held),
        "max_stall_ms_since_start": round(stalls_end["max"] * 1000, 2) if stalls_end else None,
    }


# -- the parent side ------------------------------------------------------------


class Bench:
    """Servers of one benchmark run, started in a temporary directory and always stopped."""

    def __init__(self, progress: Progress, udp_io: str = "auto"):
        self.progress = progress
        self.udp_io_option = ("--udp-io", udp_io)
        self.servers = []
        self.tmp = tempfile.TemporaryDirectory(prefix="gamesession-bench-")
        self.server_cpu, self.loadgen_cpu, self.pinning = procs.cpu_plan()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for server in self.servers:
            server.stop()
        self.tmp.cleanup()

    def gamesession(self, *options, nofile=0):
        self.progress.show("starting twistd gamesession")
        server = procs.start_gamesession(self.tmp.name, self.server_cpu,
                                         procs.BENCH_OPTIONS + self.udp_io_option + options, nofile)
        self.servers.append(server)
        return server

    def gamesession_profiled(self, stats_path, *options, nofile=0):
        self.progress.show("starting twistd --profile gamesession")
        server = procs.start_gamesession(self.tmp.name, self.server_cpu,
                                         procs.BENCH_OPTIONS + self.udp_io_option + options, nofile,
                                         twistd_options=("--profile=" + stats_path,
                                                         "--profiler=cprofile", "--savestats"))
        self.servers.append(server)
        return server

    def echo(self, module="gamesession.bench.echo", rcvbuf=None):
        self.progress.show("starting the baseline " + module.rsplit(".", 1)[-1])
        server = procs.start_echo(self.server_cpu, module, rcvbuf)
        self.servers.append(server)
        return server

    def plan(self, server, **more):
        plan = {
            "login_port": server.login_port,
            "udp_port": server.udp_port,
            "server_key": server.public_key,
            "server_pid": server.pid,
            "cpu": self.loadgen_cpu,
        }
        plan.update(more)
        return plan

    def server_log_problems(self, server) -> int:
        try:
            with open(server.log_path) as f:
                return f.read().count("Traceback")
        except OSError:
            return 0

    def udp_io(self, server) -> str:
        """Which game-port path the server says it runs (its ``game_port`` log line)."""
        # twistd rotates its log at 1 MB: the line is in the oldest file.
        for name in sorted(glob.glob(server.log_path + "*"), reverse=True):
            try:
                with open(name) as f:
                    text = f.read()
            except OSError:
                continue
            for path in ("batched", "plain"):
                if " I/O {}".format(path) in text:
                    return path
        return "unknown"

    def header(self, name: str, settings: dict) -> dict:
        return {
            "benchmark": name,
            "settings": settings,
            "machine": procs.machine_info(),
            "pinning": self.pinning,
            "server_options": list(procs.BENCH_OPTIONS),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def bench_udp(seconds, payload, window=64, latency_seconds=None, warmup=0.5, rounds=1,
              progress=None, profile_server=None, udp_io="auto"):
    progress = progress or Progress()
    if latency_seconds is None:
        latency_seconds = max(0.5, seconds / 2)
    settings = {"seconds": seconds, "payload": payload, "window": window, "rounds": rounds,
                "latency_seconds": latency_seconds, "warmup": warmup}
    with Bench(progress, udp_io) as bench:
        result = bench.header("udp", settings)
        load_before = loadavg()
        echo = bench.echo()
        if profile_server:
            # twistd's own profiler; writes the stats when the server stops.
            server = bench.gamesession_profiled(os.path.abspath(profile_server))
            result["profiled"] = "figures include cProfile overhead: compare nothing to them"
        else:
            server = bench.gamesession()
        plan = bench.plan(server, echo_port=echo.udp_port, echo_pid=echo.pid, **settings)
        timeout = 4 * (rounds * 2 * (seconds + warmup + 1) + 2 * latency_seconds) + 60
        detail = run_loadgen(udp_job, plan, progress, timeout)
        result["server_log_tracebacks"] = bench.server_log_problems(server)
        result["udp_io"] = bench.udp_io(server)
    # On a shared machine other work steals cycles: the best round of each
    # server is the one least disturbed.
    gs = max((r["gamesession"] for r in detail["rounds"]), key=lambda r: r["pps"])
    base = max((r["baseline"] for r in detail["rounds"]), key=lambda r: r["pps"])
    gs_light, base_light = detail["gamesession_light"], detail["baseline_light"]
    per_round = sorted(r["gamesession"]["pps"] / r["baseline"]["pps"]
                       for r in detail["rounds"] if r["baseline"]["pps"])
    result.update({
        "payload": payload,
        "gamesession_pps": gs["pps"],
        "baseline_pps": base["pps"],
        "ratio": round(gs["pps"] / base["pps"], 3) if base["pps"] else None,
        "ratio_median_of_rounds": round(per_round[len(per_round) // 2], 3) if per_round else None,
        "gamesession_p50_us": gs_light["p50_us"],
        "gamesession_p99_us": gs_light["p99_us"],
        "baseline_p50_us": base_light["p50_us"],
        "baseline_p99_us": base_light["p99_us"],
        "p50_us": {"gamesession": gs_light["p50_us"], "baseline": base_light["p50_us"]},
        "p99_us": {"gamesession": gs_light["p99_us"], "baseline": base_light["p99_us"]},
        "added_p50_us": _minus(gs_light["p50_us"], base_light["p50_us"]),
        "loaded_p50_us": {"gamesession": gs["p50_us"], "baseline": base["p50_us"]},
        "loaded_p99_us": {"gamesession": gs["p99_us"], "baseline": base["p99_us"]},
        "server_cpu": {"gamesession": gs["server_cpu"], "baseline": base["server_cpu"]},
        "lost": {"gamesession": gs["lost"], "baseline": base["lost"]},
        "loadgen_cpu_seconds": detail["loadgen_cpu_seconds"],
        "detail": detail,
        "load_before": load_before,
        "load_after": loadavg(),
    })
    return result


def _minus(a, b):
    return round(a - b, 1) if a is not None and b is not None else None


def scrypt_cost(rounds=5):
    """Seconds one scrypt password check (n=2**14, r=8, p=1, the usual interactive setting) takes."""
    salt = os.urandom(16)
    best = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        hashlib.scrypt(b"correct horse battery staple", salt=salt, n=2 ** 14, r=8, p=1,
                       maxmem=64 * 1024 * 1024, dklen=32)
        took = time.perf_counter() - t0
        best = took if best is None else min(best, took)
    return best


def bench_login(seconds, concurrency=64, warmup=0.5, progress=None, profile_server=None,
                udp_io="auto", storm=10000, storm_concurrency=512):
    progress = progress or Progress()
    settings = {"seconds": seconds, "concurrency": concurrency, "warmup": warmup,
                "storm": storm, "storm_concurrency": storm_concurrency}
    auth = "memory:" + ":".join("u{}:pw".format(i) for i in range(concurrency))
    with Bench(progress, udp_io) as bench:
        result = bench.header("login", settings)
        load_before = loadavg()
        options = ("--auth", auth, "--max-sessions", str(concurrency * 2 + 16))
        if profile_server:
            server = bench.gamesession_profiled(os.path.abspath(profile_server), *options,
                                                nofile=concurrency * 4 + 256)
            result["profiled"] = "figures include cProfile overhead: compare nothing to them"
        else:
            server = bench.gamesession(*options, nofile=concurrency * 4 + 256)
        plan = bench.plan(server, nofile=concurrency * 4 + 256, **settings)
        detail = run_loadgen(login_job, plan, progress, 4 * (seconds + warmup) + 60)
        result["server_log_tracebacks"] = bench.server_log_problems(server)
        result["udp_io"] = bench.udp_io(server)
    result.update(detail)
    if storm and not profile_server:
        result.update(_login_storm(progress, storm, storm_concurrency, udp_io))
    result["load_before"] = load_before
    result["load_after"] = loadavg()
    progress.show("timing scrypt")
    cost = scrypt_cost()
    progress.done()
    result["scrypt_ms"] = round(cost * 1000, 2)
    if result["logins_per_s"]:
        result["logins_per_s_with_scrypt_estimate"] = round(
            1 / (1 / result["logins_per_s"] + cost), 1)
    return result


def _login_storm(progress, storm, concurrency, udp_io):
    """``storm_10k_s`` (for 10,000): a fresh server, ``storm`` users logging in from cold."""
    wanted = storm + 512
    soft, hard = procs.raise_nofile(wanted)
    if soft < wanted:
        return {"storm_failed": "RLIMIT_NOFILE hard limit {} is too low for a storm of {} "
                                "(each login holds one fd in the server and one here)".format(
                                    hard, storm)}
    auth = "memory:" + ":".join("s{}:pw".format(i) for i in range(storm))
    with Bench(progress, udp_io) as bench:
        server = bench.gamesession("--auth", auth, "--max-sessions", str(storm + 16),
                                   nofile=wanted)
        plan = bench.plan(server, nofile=wanted, storm=storm, storm_concurrency=concurrency)
        detail = run_loadgen(storm_job, plan, progress, max(60.0, storm / 50.0) + 60)
        detail["storm_server_log_tracebacks"] = bench.server_log_problems(server)
    detail["storm"] = storm
    if storm == 10000 and "storm_s" in detail and not detail["storm_failures"]:
        detail["storm_10k_s"] = detail["storm_s"]
    return detail


def bench_sessions(sessions, seconds=2.0, window=64, payload=64, concurrency=64, warmup=0.5,
                   rounds=3, progress=None, udp_io="auto"):
    progress = progress or Progress()
    wanted = sessions + 256
    soft, hard = procs.raise_nofile(wanted)
    notes = []
    if soft < wanted:
        usable = max(1, soft - 256)
        notes.append("RLIMIT_NOFILE hard limit {} is too low for {} sessions (each needs one fd "
                     "in the server and one in the load generator); measured {} instead. "
                     "Raise it (ulimit -Hn, or LimitNOFILE= under systemd).".format(
                         hard, sessions, usable))
        sessions = usable
    settings = {"sessions": sessions, "seconds": seconds, "window": window, "payload": payload,
                "concurrency": concurrency, "warmup": warmup, "rounds": rounds}
    with Bench(progress, udp_io) as bench:
        result = bench.header("sessions", settings)
        load_before = loadavg()
        metrics_port = procs.free_port()
        server = bench.gamesession("--max-sessions", str(sessions + 16), "--stall-probe",
                                   "--metrics", "tcp:{}:interface={}".format(metrics_port, HOST),
                                   nofile=wanted)
        plan = bench.plan(server, nofile=wanted,
                          metrics_url="http://{}:{}/metrics".format(HOST, metrics_port),
                          **settings)
        timeout = 6 * rounds * (seconds + warmup + 1) + max(60.0, sessions / 50.0) + 60
        detail = run_loadgen(sessions_job, plan, progress, timeout)
        result["server_log_tracebacks"] = bench.server_log_problems(server)
        result["udp_io"] = bench.udp_io(server)
    result.update(detail)
    result["fd_limit"] = {"soft": soft, "hard": hard}
    result["notes"] = notes
    result["load_before"] = load_before
    result["load_after"] = loadavg()
    return result


# -- output ---------------------------------------------------------------------


def _fmt(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, float):
        text = "{:,.1f}".format(value) if abs(value) < 100 else "{:,.0f}".format(value)
    else:
        text = "{:,}".format(value)
    return text + unit


def table(rows) -> str:
    """Two aligned columns."""
    width = max(len(name) for name, _ in rows)
    return "\n".join("{:<{w}}  {}".format(name, value, w=width) for name, value in rows)


def summary(result: dict) -> str:
    kind = result["benchmark"]
    load = "load {} -> {}".format(" ".join(map(str, result["load_before"])),
                                  " ".join(map(str, result["load_after"])))
    if kind == "udp":
        rounds = result["settings"].get("rounds", 1)
        rows = [
            ("udp, payload {} B".format(result["payload"]), "gamesession | baseline"),
            ("throughput (pps){}".format(", best of {}".format(rounds) if rounds > 1 else ""),
             "{} | {}".format(_fmt(result["gamesession_pps"]), _fmt(result["baseline_pps"]))),
            ("ratio", "-" if result["ratio"] is None else "{:.3f}".format(result["ratio"])),
            ("rtt p50 light (us)", "{} | {}".format(_fmt(result["gamesession_p50_us"]),
                                                    _fmt(result["baseline_p50_us"]))),
            ("rtt p99 light (us)", "{} | {}".format(_fmt(result["gamesession_p99_us"]),
                                                    _fmt(result["baseline_p99_us"]))),
            ("rtt p50 loaded (us)", "{} | {}".format(_fmt(result["loaded_p50_us"]["gamesession"]),
                                                     _fmt(result["loaded_p50_us"]["baseline"]))),
            ("server cpu (cores)", "{} | {}".format(_fmt(result["server_cpu"]["gamesession"]),
                                                    _fmt(result["server_cpu"]["baseline"]))),
            ("lost packets", "{} | {}".format(result["lost"]["gamesession"],
                                              result["lost"]["baseline"])),
        ]
        if rounds > 1:
            rows.insert(3, ("ratio, median of rounds", "{:.3f}".format(
                result["ratio_median_of_rounds"])))
    elif kind == "accept":
        from gamesession.bench.accept import summary_rows

        rows = summary_rows(result)
    elif kind == "login":
        rows = [
            ("logins", "{} in {:.1f} s, {} concurrent".format(
                result["logins"], result["seconds"], result["settings"]["concurrency"])),
            ("logins_per_s", _fmt(result["logins_per_s"])),
            ("login p50/p99 (us)", "{} / {}".format(_fmt(result["login_p50_us"]),
                                                    _fmt(result["login_p99_us"]))),
            ("failures", str(result["failures"])),
            ("server cpu (cores)", _fmt(result["server_cpu"])),
            ("scrypt per check (ms)", _fmt(result["scrypt_ms"])),
            ("logins/s with scrypt (est.)", _fmt(result.get("logins_per_s_with_scrypt_estimate"))),
        ]
        if "storm_s" in result:
            rows.append(("storm: {:,} logins from cold".format(result["storm"]),
                         "{} s, {} failures, {} concurrent".format(
                             _fmt(result["storm_s"]), result["storm_failures"],
                             result["settings"]["storm_concurrency"])))
        if "storm_10k_s" in result:
            rows.append(("storm_10k_s", _fmt(result["storm_10k_s"])))
        if "storm_failed" in result:
            rows.append(("storm FAILED", result["storm_failed"]))
    elif kind == "rooms":
        from gamesession.bench.rooms import summary_rows

        rows = summary_rows(result)
    elif kind == "capacity":
        from gamesession.bench.capacity import summary_rows

        rows = summary_rows(result)
    elif kind == "cluster":
        from gamesession.bench.cluster import summary_rows

        rows = summary_rows(result)
    else:
        rounds = result["settings"].get("rounds", 1)
        best = ", best of {}".format(rounds) if rounds > 1 else ""
        rows = [
            ("sessions held", "{:,}".format(result["sessions_held"])),
            ("bytes_per_session", _fmt(result["bytes_per_session"])),
            ("server rss 1 -> N", "{:,} -> {:,} bytes".format(result["rss_one_session"],
                                                              result["rss_all_sessions"])),
            ("pps 1 session{}".format(best), _fmt(result["pps_one"])),
            ("pps N sessions{}".format(best), _fmt(result["pps_many"])),
            ("pps_ratio", "-" if result["pps_ratio"] is None else "{:.3f}".format(result["pps_ratio"])),
            ("pps 1 of N held{}".format(best), _fmt(result["pps_one_of_n"])),
            ("pps_ratio_interleaved", "-" if result["pps_ratio_interleaved"] is None
             else "{:.3f}".format(result["pps_ratio_interleaved"])),
            ("rtt p50 loaded 1 | N (us)", "{} | {}".format(_fmt(result["one"]["p50_us"]),
                                                          _fmt(result["many"]["p50_us"]))),
            ("sessions alive at end", "{:,}".format(result["sessions_alive_at_end"])),
            ("max_stall_ms (N held, traffic)", _fmt(result.get("max_stall_ms"))),
            ("max stall logins | since start (ms)", "{} | {}".format(
                _fmt(result.get("max_stall_ms_logins")),
                _fmt(result.get("max_stall_ms_since_start")))),
        ]
        rows += [("note", note) for note in result.get("notes", [])]
    if "udp_io" in result:
        rows.append(("server udp i/o", result["udp_io"]))
    rows.append(("machine", "{} cpus, {}; {}".format(
        result["machine"].get("cpus"), result["pinning"], load)))
    if result.get("server_log_tracebacks"):
        rows.append(("WARNING", "{} tracebacks in the server log".format(
            result["server_log_tracebacks"])))
    return table(rows)


def write_json(result: dict, path) -> None:
    if path:
        from gamesession.files import write_atomic
        text = json.dumps(result, indent=2, sort_keys=True) + "\n"
        try:
            write_atomic(str(path), text.encode("utf-8"), 0o644)
        except OSError as e:
            raise BenchError("cannot write --json {}: {}".format(path, e.strerror or e))
