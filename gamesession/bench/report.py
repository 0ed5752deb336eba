"""``gamesession bench report``: the chart in docs/benchmarks.md, from JSON results.

Needs matplotlib (``pip install 'gamesession[bench]'``).  Throughput and RTT
are drawn against payload size (from ``bench udp`` results) and against the
number of sessions held (from ``bench sessions`` results).
"""

import json

from gamesession.bench.runner import BenchError


def load(paths):
    udp, sessions = [], []
    for path in paths:
        try:
            with open(path) as f:
                result = json.load(f)
        except OSError as e:
            raise BenchError("cannot read {}: {}".format(path, e.strerror))
        except ValueError as e:
            raise BenchError("{} is not a JSON result of bench udp or bench sessions: {}"
                             .format(path, e))
        if not isinstance(result, dict):
            raise BenchError("{} is not a JSON result of bench udp or bench sessions".format(path))
        if result.get("benchmark") == "udp":
            udp.append(result)
        elif result.get("benchmark") == "sessions":
            sessions.append(result)
    udp.sort(key=lambda r: r["payload"])
    sessions.sort(key=lambda r: r["sessions_held"])
    return udp, sessions


def draw(paths, out) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("the chart needs matplotlib: pip install 'gamesession[bench]'")
    udp, sessions = load(paths)
    if not udp and not sessions:
        raise BenchError("no udp or sessions results among {}".format(", ".join(paths)))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (tp_payload, rtt_payload), (tp_sessions, rtt_sessions) = axes
    if udp:
        sizes = [r["payload"] for r in udp]
        tp_payload.plot(sizes, [r["baseline_pps"] for r in udp], "o-", label="plain Twisted echo")
        tp_payload.plot(sizes, [r["gamesession_pps"] for r in udp], "s-", label="gamesession")
        for r in udp:
            tp_payload.annotate("{:.2f}x".format(r["ratio"]), (r["payload"], r["gamesession_pps"]),
                                textcoords="offset points", xytext=(0, -14), ha="center")
        tp_payload.set_title("UDP echo throughput vs payload")
        tp_payload.set_xlabel("payload (bytes)")
        tp_payload.set_ylabel("datagrams/s")
        tp_payload.set_ylim(bottom=0)
        tp_payload.legend()
        for who, marker in (("baseline", "o"), ("gamesession", "s")):
            rtt_payload.plot(sizes, [r["{}_p50_us".format(who)] for r in udp], marker + "-",
                             label="{} p50".format(who))
            rtt_payload.plot(sizes, [r["{}_p99_us".format(who)] for r in udp], marker + "--",
                             label="{} p99".format(who))
        rtt_payload.set_title("RTT at light load (one packet in flight)")
        rtt_payload.set_xlabel("payload (bytes)")
        rtt_payload.set_ylabel("round trip (us)")
        rtt_payload.set_ylim(bottom=0)
        rtt_payload.legend()
    if sessions:
        counts = [r["sessions_held"] for r in sessions]
        tp_sessions.plot(counts, [r["pps_many"] for r in sessions], "s-", label="N sessions")
        tp_sessions.plot(counts, [r["pps_one"] for r in sessions], "o--",
                         label="1 session, before the others logged in")
        if all("pps_one_of_n" in r for r in sessions):
            tp_sessions.plot(counts, [r["pps_one_of_n"] for r in sessions], "^:",
                             label="1 of the N held (interleaved with N)")
        for r in sessions:
            if not r.get("bytes_per_session"):
                continue
            tp_sessions.annotate("{:,.0f} B/session".format(r["bytes_per_session"]),
                                 (r["sessions_held"], r["pps_many"]), textcoords="offset points",
                                 xytext=(0, -14), ha="center", fontsize=8)
        tp_sessions.set_xscale("log")
        tp_sessions.set_title("gamesession throughput vs sessions held")
        tp_sessions.set_xlabel("sessions")
        tp_sessions.set_ylabel("datagrams/s")
        tp_sessions.set_ylim(bottom=0)
        tp_sessions.legend()
        rtt_sessions.plot(counts, [r["many"]["p50_us"] for r in sessions], "s-", label="p50")
        rtt_sessions.plot(counts, [r["many"]["p99_us"] for r in sessions], "s--", label="p99")
        rtt_sessions.set_xscale("log")
        rtt_sessions.set_title("RTT at full load ({} in flight) vs sessions".format(
            sessions[0]["settings"]["window"]))
        rtt_sessions.set_xlabel("sessions")
        rtt_sessions.set_ylabel("round trip (us)")
        rtt_sessions.legend()
    every = udp + sessions
    loads = sorted({tuple(r["load_before"]) for r in every})
    fig.suptitle("gamesession bench on {} ({} cpus); load averages at start: {}".format(
        every[0]["machine"].get("cpu_model", "?"), every[0]["machine"].get("cpus"),
        ", ".join(str(l[0]) for l in loads)), fontsize=10)
    fig.tight_layout()
    import io
    from gamesession.files import write_atomic
    png = io.BytesIO()
    try:
        fig.savefig(png, dpi=90, format="png")
        write_atomic(str(out), png.getvalue(), 0o644)
    except OSError as e:
        raise BenchError("cannot write --out {}: {}".format(out, e.strerror or e))
    finally:
        plt.close(fig)
    return "wrote {} from {} udp and {} sessions results".format(out, len(udp), len(sessions))
