"""``gamesession bench cluster``: what clustering costs, on one redis-server and real nodes.

One run starts a real ``redis-server`` (no persistence) on a free loopback
port, two ``twistd gamesession --cluster`` nodes sharing one key, and one
standalone ``twistd gamesession``, and measures:

- **cross-node kick** (``kick_ms``): a user is logged in on node A; the same
  user logs in on node B (``--duplicate-login kick``); the time from the
  start of that login to the end of the session on A.
- **redirect join** (``redirect_join_ms``): alice on A is in a room and sends
  a room datagram every 2 ms; bob logs in on B and joins that room: B
  answers with a redirect, bob's client logs in to A with the ticket, and
  the figure is the time from the start of bob's login on B to the first
  room datagram from alice that bob receives on A.
- **directory operations** (``directory_ops_per_s``): claim and release of
  distinct users against the Redis directory (``RedisDirectory``), 32 in
  flight, and the latency of one operation alone (``directory_op_us``).
- **per-packet throughput** (``clustered_pps`` / ``standalone_pps``, ``ratio``):
  the UDP echo load of ``bench udp`` against node A and against the
  standalone server, alternating, best of ``--rounds``: per-packet work never
  touches the directory, so the two should not differ beyond noise.

The latencies are medians (and p90) over ``--rounds`` x 5 tries, driven by
``GameClient`` on a Twisted reactor in the load generator process.
"""

import os
import statistics
import time

from nacl.public import PrivateKey

from gamesession.bench import procs
from gamesession.bench.redisproc import RedisServer, have_redis
from gamesession.keys import write_private_key

HOST = "127.0.0.1"
NODE_TTL = "2"


def _redis_command(port, *words) -> bytes:
    import socket

    with socket.create_connection((HOST, port), timeout=2) as s:
        s.sendall(" ".join(words).encode() + b"\r\n")
        return s.recv(4096)


def start_node(workdir, key_file, public_key, cpu, options=()):
    """A twistd gamesession (a cluster node when ``options`` say so) with the shared key."""
    os.makedirs(workdir, exist_ok=True)
    server = procs.start_gamesession(workdir, cpu, procs.BENCH_OPTIONS + tuple(options)
                                     + ("--key-file", key_file))
    server.public_key = public_key
    return server


def _stats(samples) -> dict:
    if not samples:
        return {"median": None, "p90": None, "n": 0}
    ordered = sorted(samples)
    return {"median": round(statistics.median(ordered), 2),
            "p90": round(ordered[min(len(ordered) - 1, (len(ordered) * 9) // 10)], 2),
            "n": len(ordered)}


# -- the load generator's side (a forked child: its own reactor) -----------------------


def latency_job(plan, progress):
    """Kick and redirect-join latencies and directory operations, on a Twisted reactor."""
    from twisted.internet import reactor

    out = {}

    def run():
        from twisted.internet import defer

        d = defer.ensureDeferred(_latencies(reactor, plan, progress, out))
        d.addErrback(lambda f: out.setdefault("error", f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run(installSignalHandlers=False)
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


async def _latencies(reactor, plan, progress, out):
    from twisted.internet import defer, task

    from gamesession.client import GameClient

    a, b = plan["a"], plan["b"]
    key = bytes.fromhex(plan["server_key"])
    tries = plan["tries"]

    def login(node, user):
        return GameClient.connect(reactor, HOST, node["login_port"], key, user, "pw",
                                  timeout=10)

    kicks = []
    for n in range(tries):
        progress("cross-node kick {}/{}".format(n + 1, tries))
        first = await login(a, "kicked")
        ended = defer.Deferred()
        first.closed.addBoth(lambda _, d=ended: d.called or d.callback(time.perf_counter()))
        start = time.perf_counter()
        second = await login(b, "kicked")
        at = await ended.addTimeout(5, reactor)
        kicks.append((at - start) * 1000)
        await second.logout()
        await task.deferLater(reactor, 0.05, lambda: None)
    out["kick_ms"] = _stats(kicks)

    joins = []
    alice = await login(a, "alice")
    room = await alice.create_room("bench", max_members=4)
    sending = task.LoopingCall(lambda: room.send_datagram(b"tick"))
    sending.clock = reactor
    sending.start(0.002)
    try:
        for n in range(tries):
            progress("redirect join {}/{}".format(n + 1, tries))
            start = time.perf_counter()
            bob = await login(b, "bob")
            joined = await bob.join_room(room.id)
            heard = defer.Deferred()
            joined.on_datagram = lambda _e, d=heard: d.called or d.callback(time.perf_counter())
            at = await heard.addTimeout(5, reactor)
            joins.append((at - start) * 1000)
            if bob.welcome is None or bob.server_udp[1] != a["udp_port"]:
                raise RuntimeError("bob did not move to node A")
            await bob.logout()
            await task.deferLater(reactor, 0.05, lambda: None)
    finally:
        sending.stop()
    await alice.logout()
    out["redirect_join_ms"] = _stats(joins)

    progress("directory operations")
    out.update(await _directory_ops(reactor, plan))


async def _directory_ops(reactor, plan):
    from twisted.internet import defer, task

    from gamesession.cluster.directory import NodeRecord
    from gamesession.cluster.redisdir import RedisDirectory, parse_redis_url

    directory = RedisDirectory(parse_redis_url(plan["redis_url"]), reactor).connect()
    for _ in range(200):
        if directory.connected:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    node = NodeRecord("bench-dir", HOST, 1, 1)
    await directory.heartbeat(node, 60.0)
    alone = []
    for n in range(200):
        t0 = time.perf_counter_ns()
        await directory.claim_user("solo{}".format(n), node.name, "c", "kick")
        alone.append((time.perf_counter_ns() - t0) / 1000)
    for n in range(200):
        await directory.release_user("solo{}".format(n), node.name, "c")
    done = [0]
    deadline = time.perf_counter() + plan["seconds"]

    async def worker(w):
        n = 0
        while time.perf_counter() < deadline:
            user = "u{}-{}".format(w, n)
            await directory.claim_user(user, node.name, "c", "kick")
            await directory.release_user(user, node.name, "c")
            done[0] += 2
            n += 1
    started = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker(w)) for w in range(32)])
    took = time.perf_counter() - started
    await directory.deregister(node.name)
    await directory.close()
    return {"directory_ops_per_s": round(done[0] / took),
            "directory_op_us": _stats(alone)}


def throughput_job(plan, progress):
    """bench udp's echo load against the clustered node and the standalone one, alternating."""
    from gamesession.bench import runner

    rounds = []
    for n in range(plan["rounds"]):
        row = {}
        for name in ("standalone", "clustered"):
            target = dict(plan, **plan[name])
            fleet = runner._login_fleet(target, "{}{}".format(name, n), progress=progress)
            try:
                row[name] = runner._measure(fleet.udp, target, target["server_pid"], progress,
                                            "{} round {}/{}".format(name, n + 1, plan["rounds"]),
                                            plan["window"], plan["seconds"],
                                            sessions=[fleet.ready[0].core])
            finally:
                fleet.close_all()
        rounds.append(row)
    return {"rounds": rounds}


# -- the parent's side ------------------------------------------------------------------


def bench_cluster(seconds=2.0, rounds=3, payload=64, window=64, progress=None) -> dict:
    """Run ``bench cluster``; the result dict (see the module docstring)."""
    from gamesession.bench import runner

    if not have_redis():
        raise runner.BenchError("bench cluster needs redis-server (apt-get install redis-server)")
    progress = progress or runner.Progress()
    settings = {"seconds": seconds, "rounds": rounds, "payload": payload, "window": window,
                "tries": 5 * rounds, "warmup": 0.5, "node_ttl": float(NODE_TTL)}
    with runner.Bench(progress) as bench:
        result = bench.header("cluster", settings)
        load_before = runner.loadavg()
        redis = RedisServer(bench.tmp.name).start()
        try:
            key = PrivateKey.generate()
            key_file = os.path.join(bench.tmp.name, "cluster.key")
            write_private_key(key_file, key)
            public = bytes(key.public_key)
            nodes = {}
            for name in ("a", "b"):
                progress.show("starting cluster node " + name)
                nodes[name] = start_node(
                    os.path.join(bench.tmp.name, "node-" + name), key_file, public,
                    bench.server_cpu, ("--cluster", redis.url, "--node-name", "node-" + name,
                                       "--advertise", HOST, "--node-ttl", NODE_TTL))
                bench.servers.append(nodes[name])
            progress.show("starting the standalone server")
            alone = start_node(os.path.join(bench.tmp.name, "standalone"), key_file, public,
                               bench.server_cpu)
            bench.servers.append(alone)
            deadline = time.monotonic() + 20
            while _redis_command(redis.port, "ZCARD", "gamesession:nodes") != b":2\r\n":
                if time.monotonic() > deadline:
                    raise runner.BenchError("the cluster nodes did not register in Redis")
                time.sleep(0.05)
            time.sleep(0.5)  # their first restore done

            def endpoint(server):
                return {"login_port": server.login_port, "udp_port": server.udp_port,
                        "server_pid": server.pid}
            plan = {"a": endpoint(nodes["a"]), "b": endpoint(nodes["b"]),
                    "standalone": endpoint(alone), "clustered": endpoint(nodes["a"]),
                    "server_key": public.hex(), "redis_url": redis.url,
                    "cpu": bench.loadgen_cpu, **settings}
            latencies = runner.run_loadgen(latency_job, plan, progress, 120 + 10 * rounds)
            # (the Fleet wants the key as bytes)
            udp_plan = dict(plan, server_key=public)
            throughput = runner.run_loadgen(throughput_job, udp_plan, progress,
                                            4 * rounds * 2 * (seconds + 2) + 60)
            result["server_log_tracebacks"] = sum(bench.server_log_problems(s)
                                                  for s in (nodes["a"], nodes["b"], alone))
        finally:
            redis.stop()
    best = {name: max((r[name] for r in throughput["rounds"]), key=lambda r: r["pps"])
            for name in ("standalone", "clustered")}
    per_round = sorted(r["clustered"]["pps"] / r["standalone"]["pps"]
                       for r in throughput["rounds"] if r["standalone"]["pps"])
    result.update({
        "kick_ms": latencies["kick_ms"],
        "redirect_join_ms": latencies["redirect_join_ms"],
        "directory_ops_per_s": latencies["directory_ops_per_s"],
        "directory_op_us": latencies["directory_op_us"],
        "clustered_pps": best["clustered"]["pps"],
        "standalone_pps": best["standalone"]["pps"],
        "ratio": round(best["clustered"]["pps"] / best["standalone"]["pps"], 3)
        if best["standalone"]["pps"] else None,
        "ratio_median_of_rounds": round(per_round[len(per_round) // 2], 3) if per_round else None,
        "server_cpu": {name: best[name]["server_cpu"] for name in best},
        "detail": {"throughput": throughput["rounds"]},
        "load_before": load_before,
        "load_after": runner.loadavg(),
    })
    return result


def summary_rows(result) -> list:
    def ms(stats):
        return "{} ms median, {} ms p90 ({} tries)".format(stats["median"], stats["p90"], stats["n"])
    return [
        ("cross-node kick", ms(result["kick_ms"])),
        ("redirect join (login on B to 1st datagram on A)", ms(result["redirect_join_ms"])),
        ("directory ops/s (claim+release, 32 in flight)", "{:,}".format(result["directory_ops_per_s"])),
        ("directory op alone", "{} us median, {} us p90".format(
            result["directory_op_us"]["median"], result["directory_op_us"]["p90"])),
        ("clustered node pps", "{:,}".format(result["clustered_pps"])),
        ("standalone pps", "{:,}".format(result["standalone_pps"])),
        ("ratio (best rounds; median of rounds)", "{} ; {}".format(
            result["ratio"], result["ratio_median_of_rounds"])),
        ("load average before/after", "{} / {}".format(result["load_before"], result["load_after"])),
    ]
