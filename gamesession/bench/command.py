"""Arguments and dispatch of ``gamesession bench``; imports the heavy parts only when run."""

import json
import sys


def _payload(text):
    value = int(text)
    if not 8 <= value <= 1200:
        raise ValueError("payload must be 8 to 1200 bytes")
    return value


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise ValueError("must be positive")
        return value
    parse.__name__ = "positive " + kind.__name__  # argparse names the type in its error
    return parse


POSITIVE_INT, POSITIVE_FLOAT = _positive(int), _positive(float)


def _count(text):
    return 0 if text.strip() == "0" else POSITIVE_INT(text)


def _at_least_two(text):
    value = int(text)
    if value < 2:
        raise ValueError("a room needs at least 2 members")
    return value


_at_least_two.__name__ = "room size"


def _fraction(text):
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError("a fraction from 0 to below 1")
    return value


_fraction.__name__ = "fraction"


def _fanouts(text):
    """``1,2,4,8,16``: room fan-outs (receivers per datagram), each 1 to 63."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or not all(1 <= value <= 63 for value in values):
        raise ValueError("fan-outs are 1 to 63 receivers")
    return values


_fanouts.__name__ = "fan-out list (1 to 63 each)"  # argparse names the type in its error


def _server_udp_io(parser):
    parser.add_argument("--udp-io", choices=("auto", "batched", "plain"), default="auto",
                        help="the server's --udp-io (which game-port path to measure)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    sub.required = True

    p = sub.add_parser("udp", help="datagrams/s and RTT: gamesession against a plain Twisted echo")
    p.add_argument("--seconds", type=POSITIVE_FLOAT, default=5.0, help="length of the throughput phase")
    p.add_argument("--payload", type=_payload, default=64,
                   help="application payload bytes per datagram (64, 512, 1200, ...)")
    p.add_argument("--window", type=POSITIVE_INT, default=64, help="packets kept in flight")
    p.add_argument("--rounds", type=POSITIVE_INT, default=3,
                   help="throughput rounds, alternating baseline and gamesession; the best counts")
    p.add_argument("--latency-seconds", type=POSITIVE_FLOAT, default=None,
                   help="length of the light-load RTT phase (one packet in flight; default seconds/2)")
    p.add_argument("--profile-server", metavar="FILE",
                   help="run the server under twistd's cProfile and save its stats to FILE")
    _server_udp_io(p)
    p.add_argument("--json", metavar="FILE", help="write the figures to FILE")

    p = sub.add_parser("login", help="full logins per second (TCP, handshake, login, UDP ping)")
    p.add_argument("--seconds", type=POSITIVE_FLOAT, default=5.0, help="length of the login phase")
    p.add_argument("--concurrency", type=POSITIVE_INT, default=64, help="clients logging in at once")
    p.add_argument("--storm", type=_count, default=10000,
                   help="then this many clients log in to a fresh server and stay (storm_10k_s "
                        "for 10,000; 0: no storm)")
    p.add_argument("--storm-concurrency", type=POSITIVE_INT, default=512,
                   help="storm logins in progress at once")
    p.add_argument("--profile-server", metavar="FILE",
                   help="run the server under twistd's cProfile and save its stats to FILE")
    _server_udp_io(p)
    p.add_argument("--json", metavar="FILE", help="write the figures to FILE")

    p = sub.add_parser("sessions", help="memory per session and UDP throughput with N sessions held")
    p.add_argument("--sessions", type=POSITIVE_INT, default=1000, help="sessions to hold")
    p.add_argument("--seconds", type=POSITIVE_FLOAT, default=2.0, help="length of each throughput phase")
    p.add_argument("--rounds", type=POSITIVE_INT, default=3,
                   help="throughput phases with 1 and with N sessions; the best of each counts")
    p.add_argument("--payload", type=_payload, default=64,
                   help="application payload bytes per datagram")
    p.add_argument("--window", type=POSITIVE_INT, default=64, help="packets kept in flight")
    p.add_argument("--concurrency", type=POSITIVE_INT, default=64, help="clients logging in at once")
    p.add_argument("--in-process", action="store_true",
                   help="no sockets: the real server objects over fake transports in this "
                        "process, memory by tracemalloc and RSS (any --sessions)")
    _server_udp_io(p)
    p.add_argument("--json", metavar="FILE", help="write the figures to FILE")

    p = sub.add_parser("rooms", help="room relay: R rooms of K bots at HZ datagrams/s each, "
                                     "against a plain Twisted relay")
    p.add_argument("--rooms", type=int, default=10, help="rooms (R)")
    p.add_argument("--size", type=int, default=4, help="bots per room (K)")
    p.add_argument("--rate", type=float, default=30.0,
                   help="datagrams per second each bot sends to its room (HZ)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase")
    p.add_argument("--payload", type=int, default=64,
                   help="bytes of room datagram data (at least 24: the bench's stamp)")
    p.add_argument("--udp-rcvbuf", type=POSITIVE_INT, metavar="BYTES",
                   help="the server's --udp-rcvbuf, and the same SO_RCVBUF for the baseline relay "
                        "(default: the OS default for both)")
    p.add_argument("--json", metavar="FILE")

    p = sub.add_parser("capacity", help="players per core: ramp bot players in rooms until loss "
                                        "or p99 latency breaks its limit (tick: an authoritative "
                                        "room sending snapshots; relay: plain relay)")
    p.add_argument("--mode", choices=("tick", "relay"), default="tick",
                   help="tick: inputs in, one snapshot per member per tick out (the default); "
                        "relay: every datagram relayed to the other members")
    p.add_argument("--rate", type=POSITIVE_FLOAT, default=20.0,
                   help="inputs (datagrams) per second each bot sends, and the rooms' tick rate")
    p.add_argument("--room-size", type=_at_least_two, default=8, help="bots per room")
    p.add_argument("--start", type=POSITIVE_INT, default=200,
                   help="players of the first step (rounded up to whole rooms)")
    p.add_argument("--factor", type=POSITIVE_FLOAT, default=1.25,
                   help="each step has this many times the players of the last (whole rooms)")
    p.add_argument("--step", type=POSITIVE_INT, default=None,
                   help="grow by this many players a step instead of by --factor")
    p.add_argument("--max-players", type=POSITIVE_INT, default=16000,
                   help="the ramp stops here (each player holds a file descriptor on each side)")
    p.add_argument("--seconds", type=POSITIVE_FLOAT, default=5.0, help="measured length of a step")
    p.add_argument("--warmup", type=POSITIVE_FLOAT, default=1.0,
                   help="seconds of load before each step's measurement")
    p.add_argument("--payload", type=int, default=64,
                   help="relay mode: bytes of room datagram data (at least 24: the bench's stamp)")
    p.add_argument("--rounds", type=POSITIVE_INT, default=2,
                   help="measure a failing step up to this many times; the first pass counts "
                        "(a stall from another process should not end the ramp)")
    p.add_argument("--max-loss", type=_fraction, default=0.01,
                   help="a step fails above this loss (a fraction: 0.01 is 1 %%)")
    p.add_argument("--max-p99-ms", type=POSITIVE_FLOAT, default=20.0,
                   help="a step fails above this p99 latency (ms)")
    p.add_argument("--json", metavar="FILE", help="write the settings, the curve and "
                                                  "players_per_core to FILE")
    p.add_argument("--chart", metavar="FILE", help="draw the curve to FILE (PNG; matplotlib)")
    p.add_argument("--udp-rcvbuf", type=POSITIVE_INT, metavar="BYTES",
                   help="the server's --udp-rcvbuf (default: the OS default)")
    _server_udp_io(p)

    p = sub.add_parser("cluster", help="a redis-server and two cluster nodes: cross-node kick and "
                                       "redirect-join latency, directory ops/s, clustered vs "
                                       "standalone packets/s")
    p.add_argument("--seconds", type=POSITIVE_FLOAT, default=2.0,
                   help="length of each throughput phase and of the directory phase")
    p.add_argument("--rounds", type=POSITIVE_INT, default=3,
                   help="throughput rounds (best counts); latencies take 5 tries a round")
    p.add_argument("--payload", type=_payload, default=64, help="bytes per datagram")
    p.add_argument("--window", type=POSITIVE_INT, default=64, help="packets kept in flight")
    p.add_argument("--json", metavar="FILE", help="write the figures to FILE")

    p = sub.add_parser("hotpath", help="in-process CPU cost of the server's UDP path per packet")
    p.add_argument("--packets", type=POSITIVE_INT, default=50000, help="packets per round")
    p.add_argument("--payload", type=_payload, default=64,
                   help="application payload bytes per datagram")
    p.add_argument("--sessions", type=POSITIVE_INT, default=1, help="sessions the packets are spread over")
    p.add_argument("--rounds", type=POSITIVE_INT, default=5, help="rounds; the best counts")
    p.add_argument("--profile", action="store_true", help="print a cProfile of one round")
    p.add_argument("--port", choices=("batched", "plain"),
                   help="time the whole game port on loopback in-process (system calls "
                        "included) on this path, instead of the registry alone")
    p.add_argument("--fanout", type=_fanouts, metavar="N,N,...",
                   help="time the room relay instead: CPU per datagram relayed to N receivers and "
                        "per copy, for each N (e.g. 1,2,4,8,16), over an in-memory socket")
    p.add_argument("--json", metavar="FILE", help="write the figures to FILE")

    p = sub.add_parser("accept", help="TCP connections accepted per second, against plain Twisted")
    p.add_argument("--connections", type=POSITIVE_INT, default=2000,
                   help="connections per burst, each from its own loopback address")
    p.add_argument("--rounds", type=POSITIVE_INT, default=3, help="bursts per server, alternating")
    p.add_argument("--backlog", type=POSITIVE_INT, default=1024,
                   help="gamesession --listen-backlog (and the baseline's, by default)")
    p.add_argument("--baseline-backlog", type=POSITIVE_INT, default=None,
                   help="the plain Twisted server's backlog (Twisted's own default is 50)")
    p.add_argument("--json", metavar="FILE")

    p = sub.add_parser("report", help="draw the chart of docs/benchmarks.md from JSON results")
    p.add_argument("results", nargs="+", help="JSON files written by bench udp and bench sessions")
    p.add_argument("--out", default="docs/benchmarks.png", help="PNG file to write")


def run(args):
    """Run one benchmark; returns the exit status (raises BenchError on failure)."""
    from gamesession.bench import runner

    if args.benchmark == "udp":
        result = runner.bench_udp(args.seconds, args.payload, window=args.window,
                                  latency_seconds=args.latency_seconds, rounds=args.rounds,
                                  profile_server=args.profile_server, udp_io=args.udp_io)
    elif args.benchmark == "login":
        result = runner.bench_login(args.seconds, concurrency=args.concurrency,
                                    profile_server=args.profile_server, udp_io=args.udp_io,
                                    storm=args.storm, storm_concurrency=args.storm_concurrency)
    elif args.benchmark == "sessions" and args.in_process:
        from gamesession.bench import inprocess

        progress = runner.Progress()
        result = inprocess.run(args.sessions, progress=progress.show)
        progress.done()
        print(runner.table([(k, str(v)) for k, v in result.items() if k != "by_allocation_site"]
                           + [(site["where"], str(site["bytes_per_session"]))
                              for site in result["by_allocation_site"]]))
        runner.write_json(result, args.json)
        return 0
    elif args.benchmark == "sessions":
        result = runner.bench_sessions(args.sessions, seconds=args.seconds, window=args.window,
                                       payload=args.payload, concurrency=args.concurrency,
                                       rounds=args.rounds, udp_io=args.udp_io)
    elif args.benchmark == "cluster":
        from gamesession.bench.cluster import bench_cluster

        result = bench_cluster(args.seconds, args.rounds, payload=args.payload, window=args.window)
    elif args.benchmark == "accept":
        from gamesession.bench import accept

        result = accept.run(args.connections, args.rounds, args.backlog, args.baseline_backlog)
    elif args.benchmark == "rooms":
        from gamesession.bench.rooms import bench_rooms

        result = bench_rooms(args.rooms, args.size, args.rate, args.seconds, payload=args.payload,
                             udp_rcvbuf=args.udp_rcvbuf)
    elif args.benchmark == "capacity":
        from gamesession.bench.capacity import bench_capacity

        result = bench_capacity(args.mode, args.rate, args.room_size, start=args.start,
                                factor=args.factor, step=args.step or 0,
                                max_players=args.max_players, seconds=args.seconds,
                                warmup=args.warmup, payload=args.payload,
                                max_loss=args.max_loss, max_p99_ms=args.max_p99_ms,
                                rounds=args.rounds, udp_io=args.udp_io,
                                udp_rcvbuf=args.udp_rcvbuf)
        if args.chart:
            from gamesession.bench.report import draw_capacity_file

            print(draw_capacity_file(result, args.chart))
    elif args.benchmark == "hotpath":
        from gamesession.bench import hotpath

        if args.fanout:
            result = hotpath.run_fanout(args.fanout, args.packets, args.payload, args.rounds,
                                        profile=args.profile)
        elif args.port:
            result = hotpath.run_port(args.packets, args.payload, args.rounds, args.sessions,
                                      args.port, profile=args.profile)
        else:
            result = hotpath.run(args.packets, args.payload, args.rounds, args.sessions,
                                 args.profile)
        profile = result.pop("profile", None)
        if profile:
            print(profile)
        print(json.dumps(result))
        runner.write_json(result, args.json)
        return 0
    else:
        from gamesession.bench.report import draw

        print(draw(args.results, args.out))
        return 0
    print(runner.summary(result))
    runner.write_json(result, args.json)
    sys.stdout.flush()
    return 0
