"""Smoke runs of every ``gamesession bench`` command, so they cannot rot.

Each run is a second or two with tiny counts; the figures are checked for
shape and sanity, never for speed.
"""

import json

import pytest

from conftest import need, run_cli
from gamesession import mmsg

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]


def bench(plugin_path, tmp_path, *args):
    out = tmp_path / "result.json"
    result = run_cli(plugin_path, "bench", *args, "--json", str(out), timeout=100)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result


def need_matplotlib():
    # matplotlib is in the test extra, so CI runs the chart tests; a bare checkout skips.
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        need(False, "matplotlib is not installed (pip install '.[test]')")


def report(plugin_path, paths, png):
    """Run ``bench report PATHS --out PNG``; it must succeed and write a PNG."""
    result = run_cli(plugin_path, "bench", "report", *paths, "--out", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result


def test_bench_udp(plugin_path, tmp_path):
    figures, result = bench(plugin_path, tmp_path, "udp", "--seconds", "0.3",
                            "--latency-seconds", "0.2", "--payload", "512", "--rounds", "2")
    for key in ("gamesession_pps", "baseline_pps", "ratio", "gamesession_p50_us",
                "gamesession_p99_us", "baseline_p50_us", "baseline_p99_us"):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["payload"] == 512
    assert figures["server_log_tracebacks"] == 0
    assert figures["udp_io"] == ("batched" if mmsg.available() else "plain")
    assert "server udp i/o" in result.stdout
    assert "throughput (pps)" in result.stdout
    assert len(figures["detail"]["rounds"]) == 2
    assert "gamesession round 2/2" in result.stderr  # the progress line


def test_bench_login(plugin_path, tmp_path):
    figures, result = bench(plugin_path, tmp_path, "login", "--seconds", "0.5",
                            "--concurrency", "4", "--storm", "30", "--storm-concurrency", "8")
    assert figures["logins"] > 0 and figures["logins_per_s"] > 0
    assert figures["failures"] == 0, figures["failure_kinds"]
    assert figures["scrypt_ms"] > 0
    assert "logins_per_s" in result.stdout
    assert figures["storm"] == 30 and figures["storm_failures"] == 0, figures
    assert figures["storm_s"] > 0 and "storm_10k_s" not in figures  # only for 10,000
    assert "30 logins from cold" in result.stdout


def test_bench_sessions(plugin_path, tmp_path):
    figures, result = bench(plugin_path, tmp_path, "sessions", "--sessions", "5",
                            "--seconds", "0.3", "--rounds", "1")
    assert figures["sessions_held"] == 5
    assert figures["sessions_alive_at_end"] == 5
    assert figures["pps_one"] > 0 and figures["pps_many"] > 0 and figures["pps_ratio"] > 0
    assert figures["pps_one_of_n"] > 0 and figures["pps_ratio_interleaved"] > 0
    assert figures["rss_all_sessions"] > 0
    assert "bytes_per_session" in figures
    assert "pps_ratio" in result.stdout
    assert figures["max_stall_ms_since_start"] is not None and figures["max_stall_ms_since_start"] >= 0
    assert "max_stall_ms" in figures and "max_stall_ms" in result.stdout


def test_bench_hotpath(plugin_path, tmp_path):
    figures, _ = bench(plugin_path, tmp_path, "hotpath", "--packets", "300", "--rounds", "1",
                       "--sessions", "3")
    assert figures["ns_per_packet"] > 0


def test_bench_report(plugin_path, tmp_path):
    need_matplotlib()
    udp = tmp_path / "udp.json"
    sessions = tmp_path / "sessions.json"
    udp.write_text(json.dumps({
        "benchmark": "udp", "payload": 64, "gamesession_pps": 60000.0, "baseline_pps": 100000.0,
        "ratio": 0.6, "gamesession_p50_us": 80.0, "gamesession_p99_us": 150.0,
        "baseline_p50_us": 50.0, "baseline_p99_us": 90.0, "load_before": [0.1, 0.1, 0.1],
        "machine": {"cpus": 2, "cpu_model": "test"}}))
    sessions.write_text(json.dumps({
        "benchmark": "sessions", "sessions_held": 10, "pps_many": 50000.0, "pps_one": 55000.0,
        "bytes_per_session": 3000.0, "many": {"p50_us": 900.0, "p99_us": 2000.0},
        "settings": {"window": 64}, "load_before": [0.2, 0.1, 0.1],
        "machine": {"cpus": 2, "cpu_model": "test"}}))
    report(plugin_path, [str(udp), str(sessions)], tmp_path / "chart.png")


def test_bench_accept(plugin_path, tmp_path):
    figures, result = bench(plugin_path, tmp_path, "accept", "--connections", "50",
                            "--rounds", "1", "--backlog", "100")
    assert figures["settings"]["backlog"] == figures["settings"]["baseline_backlog"] == 100
    for name in ("gamesession", "baseline"):
        [burst] = figures["rounds"][name]
        assert burst["connections"] == 50 and burst["per_s"] > 0
    assert figures["server_log_tracebacks"] == 0
    assert "connections/s, median" in result.stdout


def test_bench_sessions_in_process(plugin_path, tmp_path):
    figures, result = bench(plugin_path, tmp_path, "sessions", "--in-process", "--sessions", "40")
    assert figures["sessions"] == 40 and figures["sessions_alive_after_timers"] == 40
    assert figures["traced_bytes_per_session"] > 0
    assert figures["timer_turn_max_ms"] is not None and figures["one_block_ms"] >= 0
    assert "traced_bytes_per_session" in result.stdout


def test_bench_hotpath_through_the_port(plugin_path, tmp_path):
    for udp_io in ("plain", "batched") if mmsg.available() else ("plain",):
        figures, _ = bench(plugin_path, tmp_path, "hotpath", "--port", udp_io, "--packets", "256",
                           "--rounds", "1", "--sessions", "3")
        assert figures["udp_io"] == udp_io and figures["echoed"] == 256
        assert figures["ns_per_packet"] > 0


def test_bench_rooms(plugin_path, tmp_path):
    figures, result = bench(plugin_path, tmp_path, "rooms", "--rooms", "3", "--size", "3",
                            "--rate", "20", "--seconds", "0.5")
    assert figures["expected_per_s"] == 3 * 3 * 20 * 2  # every datagram to the 2 others
    for key in ("delivered_per_s", "baseline_delivered_per_s", "ratio", "p50_us", "p99_us",
                "baseline_p50_us"):
        assert figures[key] is not None and figures[key] > 0, key
    assert 0 <= figures["loss"] <= 1 and figures["server_cpu"] is not None
    assert figures["cross_room_leaks"] == 0 and figures["misattributed"] == 0
    assert figures["detail"]["baseline"]["cross_room_leaks"] == 0
    assert figures["server_log_tracebacks"] == 0
    assert "cross_room_leaks" in result.stdout


def test_bench_rooms_tally_counts_leaks_and_misattributed_senders():
    from gamesession.bench.rooms import STAMP, Tally

    tally = Tally({0: 0, 1: 0, 2: 1, 3: 1}, size=2)
    tally.window = (0, 100)
    tally.received(0, STAMP.pack(1, 50, 0, 1), 1, 60)  # from its room mate, stamped right
    tally.received(0, STAMP.pack(2, 50, 1, 2), 2, 60)  # from another room: a leak
    tally.received(0, STAMP.pack(3, 50, 0, 1), 3, 60)  # stamped as someone else
    tally.received(0, STAMP.pack(4, 500, 0, 1), 1, 600)  # sent after the window: not counted
    tally.received(0, b"junk", None, 60)
    assert (tally.delivered, tally.leaks, tally.misattributed, tally.strays) == (2, 1, 1, 1)
    assert list(tally.latencies) == [10, 10]


def test_bench_report_rooms(plugin_path, tmp_path):
    need_matplotlib()
    paths = []
    for n, (rooms, size) in enumerate([(2, 4), (5, 8)]):
        expected = rooms * size * 30 * (size - 1)
        path = tmp_path / "rooms-{}.json".format(n)
        path.write_text(json.dumps({
            "benchmark": "rooms", "settings": {"rooms": rooms, "size": size, "rate": 30},
            "expected_per_s": expected, "delivered_per_s": expected * 0.9,
            "baseline_delivered_per_s": expected, "p50_us": 300.0, "p99_us": 900.0,
            "baseline_p50_us": 200.0, "baseline_p99_us": 700.0, "server_us_per_delivery": 11.0,
            "baseline_server_us_per_delivery": 9.0, "load_before": [0.5, 0.4, 0.3],
            "machine": {"cpus": 2, "cpu_model": "test"}}))
        paths.append(str(path))
    result = report(plugin_path, paths, tmp_path / "rooms.png")
    assert "from 2 rooms results" in result.stdout


def test_bench_cluster(plugin_path, tmp_path):
    from gamesession.bench.redisproc import have_redis

    need(have_redis(), "redis-server is not installed (apt-get install redis-server)")
    figures, result = bench(plugin_path, tmp_path, "cluster", "--seconds", "0.3", "--rounds", "1")
    for key in ("kick_ms", "redirect_join_ms", "directory_op_us"):
        assert figures[key]["n"] > 0 and figures[key]["median"] > 0, key
    assert figures["kick_ms"]["n"] == figures["redirect_join_ms"]["n"] == 5
    for key in ("directory_ops_per_s", "clustered_pps", "standalone_pps", "ratio"):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["server_log_tracebacks"] == 0
    assert "redirect join" in result.stdout and "cross-node kick" in result.stdout


def test_bench_hotpath_fanout(plugin_path, tmp_path):
    figures, _ = bench(plugin_path, tmp_path, "hotpath", "--fanout", "1,3", "--packets", "100",
                       "--rounds", "1")
    assert [f["fanout"] for f in figures["fanouts"]] == [1, 3]
    for f in figures["fanouts"]:
        assert f["relay_ns_per_datagram"] > 0 and f["tick_ns_per_copy"] > 0
