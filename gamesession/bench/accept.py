"""``gamesession bench accept``: how fast the login port takes new connections.

A burst of connections opened one after another, each from its own loopback
source address (127.1.x.y), all held open, against ``twistd gamesession``
and against a plain Twisted TCP server that accepts and does nothing, in
alternating rounds.  For each it reports connections per second, how many
connects had to wait for a SYN retransmit (over 0.5 s: the accept queue was
full and the kernel dropped the SYN), and the server's CPU per accepted
connection.  Both servers run with the same listen backlog unless
``--baseline-backlog`` says otherwise; run it once with ``--backlog 50``
(Twisted's default, what gamesession had before ``--listen-backlog``) to see
what the queue length does.

The machine is shared: the figures move with its load (printed with them).
Benchmarks measure; no test asserts any of these numbers.

``python -m gamesession.bench.accept PORT BACKLOG`` runs the baseline server.
"""

import os
import socket
import statistics
import subprocess
import sys
import time

from gamesession.bench import procs

HOST = "127.0.0.1"
RETRANSMIT = 0.5  # a connect slower than this waited for a SYN retransmit (1 s on Linux)


def source_address(i: int) -> str:
    """The i-th of 64516 loopback source addresses, 127.1.0.1 onwards."""
    return "127.1.{}.{}".format(i // 254, 1 + i % 254)


def burst(port: int, count: int, pid: int) -> dict:
    """Open ``count`` connections one after another from distinct addresses; close them after."""
    socks = []
    slow = 0
    waits = []
    cpu_before = procs.cpu_seconds(pid)
    start = time.monotonic()
    try:
        for i in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((source_address(i), 0))
            sock.settimeout(10)
            t = time.monotonic()
            sock.connect((HOST, port))
            waited = time.monotonic() - t
            waits.append(waited)
            slow += waited > RETRANSMIT
        elapsed = time.monotonic() - start
        time.sleep(0.5)  # let the server take the last ones off its queue
        cpu = procs.cpu_seconds(pid) - cpu_before
    finally:
        for sock in socks:
            sock.close()
    return {
        "connections": count,
        "seconds": round(elapsed, 4),
        "per_s": round(count / elapsed, 1) if elapsed else None,
        "retransmit_waits": slow,
        "connect_max_ms": round(max(waits) * 1e3, 2) if waits else None,
        # /proc CPU ticks are 10 ms: meaningful over a few hundred connections.
        "server_cpu_us_per_connection": round(cpu / count * 1e6, 1),
    }


def start_baseline(backlog: int, cpu=None, nofile=0) -> procs.ServerProcess:
    port = procs.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gamesession.bench.accept", str(port), str(backlog)],
        env=procs._env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=procs._preexec(cpu, nofile))
    server = procs.ServerProcess("baseline", process, None, login_port=port)
    procs.wait_for_tcp(port, process)
    return server


def run(connections=2000, rounds=3, backlog=1024, baseline_backlog=None, progress=None) -> dict:
    """Alternate rounds against both servers; the figures of every round and their medians."""
    from gamesession.bench.runner import Bench, Progress, loadavg

    progress = progress or Progress()
    baseline_backlog = backlog if baseline_backlog is None else baseline_backlog
    if connections > 254 * 250:
        raise ValueError("at most 63500 connections (distinct source addresses)")
    before = loadavg()
    with Bench(progress) as bench:
        header = bench.header("accept", {"connections": connections, "rounds": rounds,
                                         "backlog": backlog, "baseline_backlog": baseline_backlog})
        # Accepting only: no hello is sent, so the hello and login timeouts are
        # set beyond the run (their closing work would land inside the measurement).
        server = bench.gamesession("--listen-backlog", str(backlog), "--hello-timeout", "600",
                                   "--login-timeout", "600", nofile=connections + 256)
        baseline = start_baseline(baseline_backlog, bench.server_cpu, connections + 256)
        bench.servers.append(baseline)
        procs.raise_nofile(connections + 256)
        procs.pin(bench.loadgen_cpu)  # this process is the load generator
        results = {"gamesession": [], "baseline": []}
        for r in range(rounds):
            for name, target in (("baseline", baseline), ("gamesession", server)):
                progress.show("{} round {}/{}: {} connections".format(name, r + 1, rounds,
                                                                       connections))
                results[name].append(burst(target.login_port, connections, target.pid))
                time.sleep(0.5)
        tracebacks = bench.server_log_problems(server)
    progress.done()

    def median(name, key):
        values = [x[key] for x in results[name] if x[key] is not None]
        return statistics.median(values) if values else None

    header.update({
        "load_before": before,
        "load_after": loadavg(),
        "rounds": results,
        "gamesession_per_s": median("gamesession", "per_s"),
        "baseline_per_s": median("baseline", "per_s"),
        "gamesession_retransmit_waits": sum(x["retransmit_waits"] for x in results["gamesession"]),
        "baseline_retransmit_waits": sum(x["retransmit_waits"] for x in results["baseline"]),
        "gamesession_cpu_us": median("gamesession", "server_cpu_us_per_connection"),
        "baseline_cpu_us": median("baseline", "server_cpu_us_per_connection"),
        "server_log_tracebacks": tracebacks,
    })
    return header


def summary_rows(result: dict) -> list:
    s = result["settings"]
    return [
        ("accept burst", "{} connections from {} addresses, {} rounds".format(
            s["connections"], s["connections"], s["rounds"])),
        ("listen backlog", "{} | {}".format(s["backlog"], s["baseline_backlog"])),
        ("", "gamesession | plain Twisted"),
        ("connections/s, median", "{} | {}".format(result["gamesession_per_s"],
                                                   result["baseline_per_s"])),
        ("SYN retransmit waits, all rounds", "{} | {}".format(
            result["gamesession_retransmit_waits"], result["baseline_retransmit_waits"])),
        ("server cpu per connection (us)", "{} | {}".format(result["gamesession_cpu_us"],
                                                           result["baseline_cpu_us"])),
    ]


def main(argv=None):
    """The baseline: accept TCP connections and do nothing with them."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    argv = sys.argv[1:] if argv is None else argv
    port, backlog = int(argv[0]), int(argv[1])
    reactor.listenTCP(port, Factory.forProtocol(Protocol), backlog=backlog, interface=HOST)
    reactor.run()


if __name__ == "__main__":
    main()
