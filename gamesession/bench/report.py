"""``gamesession bench report``: the chart in docs/benchmarks.md, from JSON results.

Needs matplotlib (``pip install 'gamesession[bench]'``).  Throughput and RTT
are drawn against payload size (from ``bench udp`` results) and against the
number of sessions held (from ``bench sessions`` results).  Given only
``bench rooms`` results, it draws the rooms chart instead: deliveries per
second, latency and server CPU per delivery against the load asked for.
Given ``bench capacity`` results, it draws their curves: loss, p50/p99
latency and server CPU against the players of each ramp step, with the
limits and each run's ``players_per_core``.
"""

import json

from gamesession.bench.runner import BenchError


def load(paths):
    udp, sessions, rooms, capacity = [], [], [], []
    for path in paths:
        try:
            with open(path) as f:
                result = json.load(f)
        except OSError as e:
            raise BenchError("cannot read {}: {}".format(path, e.strerror))
        except ValueError as e:
            raise BenchError("{} is not a JSON result of bench udp, sessions, rooms or capacity: {}"
                             .format(path, e))
        if not isinstance(result, dict):
            raise BenchError("{} is not a JSON result of bench udp, sessions, rooms or capacity"
                             .format(path))
        kind = result.get("benchmark")
        {"udp": udp, "sessions": sessions, "rooms": rooms,
         "capacity": capacity}.get(kind, []).append(result)
    udp.sort(key=lambda r: r["payload"])
    sessions.sort(key=lambda r: r["sessions_held"])
    rooms.sort(key=lambda r: r["expected_per_s"])
    return udp, sessions, rooms, capacity


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("the chart needs matplotlib: pip install 'gamesession[bench]'")
    return plt


def _title(fig, results):
    loads = sorted({tuple(r["load_before"]) for r in results})
    fig.suptitle("gamesession bench on {} ({} cpus); load averages at start: {}".format(
        results[0]["machine"].get("cpu_model", "?"), results[0]["machine"].get("cpus"),
        ", ".join(str(l[0]) for l in loads)), fontsize=10)


def draw(paths, out) -> str:
    plt = _pyplot()
    udp, sessions, rooms, capacity = load(paths)
    if capacity and not udp and not sessions and not rooms:
        return draw_capacity(plt, capacity, out)
    if rooms and not udp and not sessions:
        return draw_rooms(plt, rooms, out)
    if not udp and not sessions:
        raise BenchError("no udp, sessions, rooms or capacity results among {}".format(
            ", ".join(paths)))
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
    _title(fig, udp + sessions)
    _save(plt, fig, out)
    return "wrote {} from {} udp and {} sessions results".format(out, len(udp), len(sessions))


def _save(plt, fig, out) -> None:
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


def draw_rooms(plt, rooms, out) -> str:
    """The rooms chart: one point per ``bench rooms`` result, by the deliveries asked for."""
    fig, (delivered, latency, cpu) = plt.subplots(1, 3, figsize=(14, 4.5))
    expected = [r["expected_per_s"] for r in rooms]
    labels = ["{}x{}".format(r["settings"]["rooms"], r["settings"]["size"]) for r in rooms]
    delivered.plot(expected, expected, "k:", label="expected")
    delivered.plot(expected, [r["baseline_delivered_per_s"] for r in rooms], "o-",
                   label="plain Twisted relay")
    delivered.plot(expected, [r["delivered_per_s"] for r in rooms], "s-", label="gamesession")
    for x, y, text in zip(expected, [r["delivered_per_s"] for r in rooms], labels):
        delivered.annotate(text, (x, y), textcoords="offset points", xytext=(0, -14),
                           ha="center", fontsize=8)
    delivered.set_title("room datagrams delivered/s (rooms x size @ {:g} Hz)".format(
        rooms[0]["settings"]["rate"]))
    delivered.set_xlabel("deliveries/s asked for")
    delivered.set_ylabel("delivered/s")
    delivered.legend()
    for key, marker, name, color in (("baseline_", "o", "plain relay", "C0"),
                                     ("", "s", "gamesession", "C1")):
        latency.plot(expected, [r[key + "p50_us"] for r in rooms], marker + "-", color=color,
                     label=name + " p50")
        latency.plot(expected, [r[key + "p99_us"] for r in rooms], marker + "--", color=color,
                     label=name + " p99")
    latency.set_yscale("log")
    latency.set_title("send to receive at another member")
    latency.set_xlabel("deliveries/s asked for")
    latency.set_ylabel("us (log)")
    latency.legend(fontsize=8)
    cpu.plot(expected, [r["baseline_server_us_per_delivery"] for r in rooms], "o-",
             label="plain relay")
    cpu.plot(expected, [r["server_us_per_delivery"] for r in rooms], "s-", label="gamesession")
    cpu.set_title("server CPU per delivered datagram")
    cpu.set_xlabel("deliveries/s asked for")
    cpu.set_ylabel("us")
    cpu.set_ylim(bottom=0)
    cpu.legend()
    _title(fig, rooms)
    _save(plt, fig, out)
    return "wrote {} from {} rooms results".format(out, len(rooms))


def draw_capacity_file(result: dict, out) -> str:
    """``bench capacity --chart FILE``: the chart of one run's result."""
    return draw_capacity(_pyplot(), [result], out)


def draw_capacity(plt, runs, out) -> str:
    """Loss, latency and server CPU against players, one curve per ``bench capacity`` run."""
    fig, (loss, latency, cpu) = plt.subplots(1, 3, figsize=(14, 4.5))
    first = runs[0]["settings"]
    for n, run in enumerate(runs):
        s = run["settings"]
        name = "{} {}x@{:g}Hz".format(s["mode"], s["room_size"], s["rate"])
        held = run.get("players_per_core")
        if held is not None:
            name += ": {}{:,.0f}/core".format(">=" if run.get("lower_bound") else "", held)
        color = "C{}".format(n)
        curve = run["curve"]
        players = [step["players"] for step in curve]
        loss.plot(players, [100 * (step["loss"] or 0) for step in curve], "o-", color=color,
                  label=name)
        latency.plot(players, [(step["p99_us"] or 0) / 1000 for step in curve], "o-",
                     color=color, label=name + " p99")
        latency.plot(players, [(step["p50_us"] or 0) / 1000 for step in curve], "o:",
                     color=color, label="p50")
        cpu.plot(players, [step["server_cpu"] for step in curve], "o-", color=color,
                 label=name + " server")
        cpu.plot(players, [step.get("loadgen_cpu") or 0 for step in curve], "x:", color=color,
                 label="load generator")
        # The steps that failed (red x) or where the generator was the limit (grey x).
        for step in curve:
            if step["passed"] and not step.get("generator_bound"):
                continue
            mark = "grey" if step.get("generator_bound") else "red"
            loss.plot(step["players"], 100 * (step["loss"] or 0), "x", color=mark, markersize=9)
            latency.plot(step["players"], (step["p99_us"] or 0) / 1000, "x", color=mark,
                         markersize=9)
        for axis in (loss, latency, cpu):
            if held is not None:
                axis.axvline(run["players_held"], color=color, linewidth=0.8, alpha=0.5)
    loss.axhline(100 * first["max_loss"], color="k", linestyle="--", linewidth=0.8, label="limit")
    loss.set_title("loss (x: failed, grey x: generator-bound)", fontsize=10)
    loss.set_ylabel("loss (%)")
    latency.axhline(first["max_p99_ms"], color="k", linestyle="--", linewidth=0.8, label="limit")
    latency.set_title("latency (tick: the server's share, not the wait for the tick)",
                      fontsize=10)
    latency.set_ylabel("ms")
    cpu.set_title("CPU of the measured window", fontsize=10)
    cpu.set_ylabel("cores")
    cpu.set_ylim(bottom=0)
    for axis in (loss, latency, cpu):
        axis.set_xlabel("players (rooms of {})".format(first["room_size"]))
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7)
    _title(fig, runs)
    _save(plt, fig, out)
    return "wrote {} from {} capacity results".format(out, len(runs))
