"""``bench capacity``: the SnapshotRoom tick handler, the tick tally, the ramp and its verdicts
(in memory), and short runs of the real command.  Nothing here asserts a speed."""

import json

import pytest

from conftest import run_cli
from gamesession.bench import capacity
from gamesession.bench.capacity import TickTally, best_round, conclude, judge, ramp
from gamesession.bench.tickroom import (ENTRY_SIZE, INPUT, SNAPSHOT_HEADER, STATE_SIZE,
                                        SnapshotRoom, parse_snapshot)
from test_bench import need_matplotlib, report
from test_rooms import Server


def state(text):
    return text.ljust(STATE_SIZE, b".")


def snapshots(server):
    """{user: [(tick, server_time, ack, entries)]} of what the server sent since the last call."""
    out = {}
    for user, relay in server.relays():
        assert relay.sender == 0  # from the room itself
        out.setdefault(user, []).append(parse_snapshot(relay.data))
    return out


@pytest.fixture
def arena():
    server = Server(handlers={"arena": SnapshotRoom}, tick_rates={"arena": 20})
    alice, bob, carol = server.players[:3]
    room = alice.create("arena", max_members=3).room
    bob.join(room)
    carol.join(room)
    for player in (alice, bob, carol):
        player.events()
    server.relays()
    return server, room


# -- SnapshotRoom ------------------------------------------------------------------------------


def test_each_tick_sends_every_member_one_snapshot_acking_its_own_latest_input(arena):
    server, room = arena
    alice, bob, carol = server.players[:3]
    server.clock.advance(0.01)
    alice.room_datagram(room, INPUT.pack(1) + state(b"a1"))
    alice.room_datagram(room, INPUT.pack(2) + state(b"a2"))
    server.clock.advance(0.01)
    bob.room_datagram(room, INPUT.pack(7) + state(b"b7"))
    assert snapshots(server) == {}  # authoritative: inputs are not relayed
    server.clock.advance(0.03)
    got = snapshots(server)
    assert sorted(got) == ["alice", "bob", "carol"]
    assert all(len(got[user]) == 1 for user in got)  # one snapshot each per tick
    entries = [(1, state(b"a2")), (2, state(b"b7")), (3, bytes(STATE_SIZE))]
    # (tick, server time, ack, when the acked input arrived, entries)
    assert got["alice"] == [(1, pytest.approx(0.05), 2, pytest.approx(0.01), entries)]
    assert got["bob"] == [(1, pytest.approx(0.05), 7, pytest.approx(0.02), entries)]
    assert got["carol"] == [(1, pytest.approx(0.05), 0, 0.0, entries)]  # no input yet
    server.clock.advance(0.05)
    got = snapshots(server)
    [(tick, at, ack, arrived, now_entries)] = got["alice"]
    assert (tick, ack) == (2, 2) and at == pytest.approx(0.1)  # the tick number and time go on
    assert arrived == pytest.approx(0.01) and len(now_entries) == 3


def test_stale_and_short_inputs_are_ignored_and_a_long_state_is_cut(arena):
    server, room = arena
    alice = server.players[0]
    handler = server.rooms.find(room).handler
    alice.room_datagram(room, INPUT.pack(5) + state(b"five"))
    alice.room_datagram(room, INPUT.pack(4) + state(b"four"))  # overtaken on the way
    alice.room_datagram(room, INPUT.pack(5) + state(b"again"))  # a duplicate
    alice.room_datagram(room, b"\x01\x02")  # too short to hold a seq
    assert handler.malformed == 1
    server.clock.advance(0.05)
    _, _, ack, _, entries = snapshots(server)["alice"][0]
    assert ack == 5 and entries[0] == (1, state(b"five"))
    alice.room_datagram(room, INPUT.pack(6) + b"x" * (STATE_SIZE + 40))
    server.clock.advance(0.05)
    _, _, ack, _, entries = snapshots(server)["alice"][0]
    assert ack == 6 and entries[0] == (1, b"x" * STATE_SIZE)
    alice.room_datagram(room, INPUT.pack(7) + b"ab")  # a short state is zero-padded
    server.clock.advance(0.05)
    assert snapshots(server)["alice"][0][4][0] == (1, b"ab" + bytes(STATE_SIZE - 2))


def test_a_member_who_leaves_drops_out_of_the_snapshots(arena):
    server, room = arena
    alice, bob, carol = server.players[:3]
    bob.leave(room)
    server.clock.advance(0.05)
    got = snapshots(server)
    assert sorted(got) == ["alice", "carol"]
    entries = got["alice"][0][4]
    assert [member for member, _ in entries] == [1, 3]
    assert len(server.relays()) == 0


def test_an_empty_room_ticks_silently():
    handler = SnapshotRoom()
    handler.room_created(None)
    handler.tick(None, 0.05)  # a room it touched would raise here
    assert handler.ticks == 0


def test_parse_snapshot_refuses_a_truncated_one():
    data = SNAPSHOT_HEADER.pack(1, 0.0, 0, 0.0, 2) + bytes(ENTRY_SIZE)
    with pytest.raises(ValueError):
        parse_snapshot(data)
    with pytest.raises(ValueError):
        parse_snapshot(data[:5])
    assert parse_snapshot(data + bytes(ENTRY_SIZE))[4] == [(0, bytes(STATE_SIZE))] * 2


# -- the tick tally (what a bot measures) ---------------------------------------------------


def snap(tick_ms, ack, count=2, arrived_ms=0.0):
    return SNAPSHOT_HEADER.pack(1, tick_ms / 1000, ack, arrived_ms / 1000, count) + bytes(
        count * ENTRY_SIZE)


MS = 1_000_000  # ns


def us(samples):
    return [round(x / 1000) for x in samples]


def test_latency_is_the_way_in_plus_the_ticks_lateness_plus_the_way_back():
    # Clocks: perf_counter ns = wall ns - offset; here offset 0 and wall = perf.
    # The room ticks at 40, 90, 140, 190 ms (20 Hz); the 90 ms tick runs at 93, the
    # 190 ms one at 191.5.
    tally = TickTally(bots=1, size=2, seq=[0], offset_ns=0, rate=20)
    tally.window = (0, 1000 * MS)
    assert INPUT.unpack_from(tally.input(0, 10 * MS)) == (1,)
    # Input 1 arrives at 10.5 ms; the 40 ms tick acks it; received at 41 ms.
    tally.snapshot(0, snap(40, 1, arrived_ms=10.5), 41 * MS)
    # Input 2, sent at 60 ms, waits in a queue until 95: the late tick (93) misses it
    # and still acks 1; the 140 ms tick acks it, received at 142.
    tally.input(0, 60 * MS)
    tally.snapshot(0, snap(93, 1, arrived_ms=10.5), 94 * MS)
    tally.snapshot(0, snap(140, 2, arrived_ms=95), 142 * MS)
    # Input 3 (110 ms) is lost; input 4 (160 ms, arrived 160.3) is acked at 191.5.
    tally.input(0, 110 * MS)
    tally.input(0, 160 * MS)
    tally.snapshot(0, snap(191.5, 4, arrived_ms=160.3), int(192.5 * MS))
    # 1: 0.5 in + 1 back; 2: 35 in + 2 back; 3: overtaken, from the first tick after
    # it was sent (140) to the ack (192.5); 4: 0.3 in + 1.5 late + 1 back.
    assert us(tally.latencies) == [1500, 37000, 52500, 2800]
    assert us(tally.input_delays) == [500, 35000, 300]
    assert us(tally.tick_lateness) == [0, 3000, 0, 1500]
    assert us(tally.input_to_snapshot) == [31000, 82000, 82500, 32500]
    assert us(tally.first_tick_latencies) == [1000, 49000, 52500, 1000]
    assert tally.missed_tick == 2 and tally.superseded == 1 and tally.acked == 4
    figures = tally.figures(seconds=0.2, cpu=0.0, players=1, rate=20)
    assert figures["inputs_acked"] == 4 and figures["inputs_unacked"] == 0
    assert figures["snapshots"] == 4 and figures["snapshots_expected"] == 4
    assert figures["loss"] == 0.0 and figures["inputs_missed_tick"] == 0.5
    assert figures["inputs_superseded"] == 1
    assert figures["snapshot_delay_p50_us"] == 1000 and figures["snapshot_delay_p99_us"] == 2000
    assert figures["tick_lateness_p99_us"] == 3000 and figures["p99_us"] == 52500


def test_a_late_tick_counts_against_the_earliest_seen_at_its_phase():
    tally = TickTally(bots=1, size=2, seq=[0], offset_ns=0, rate=20)
    # The room's schedule is 40, 90, 140, ... ms.  The first tick seen ran 2 ms late
    # (42; it looks on time, having nothing to compare with: the warm-up's ticks
    # set the phase); the 90 ms one ran on time and sets it from then on.
    assert [tally.lateness(0, t * MS) // 1000 for t in (42, 90, 141, 190, 243)] == [
        0, 0, 1000, 0, 3000]


def test_one_ack_covers_every_earlier_input_and_unacked_ones_are_lost():
    tally = TickTally(bots=2, size=2, seq=[0, 0], offset_ns=0, rate=20)
    tally.window = (0, 1000 * MS)
    for t in (1, 2, 3):
        tally.input(0, t * MS)
    tally.input(1, 4 * MS)
    tally.snapshot(0, snap(10, 2), 11 * MS)  # input 2 arrived: 1 was lost or overtaken
    tally.snapshot(0, snap(10, 9), 11 * MS)  # an ack of an input never sent
    tally.snapshot(1, snap(10, 0, count=3), 11 * MS)  # wrong member count; acks nothing
    tally.snapshot(1, b"short", 11 * MS)
    assert tally.acked == 3 and tally.acks_beyond_sent == 1 and tally.superseded == 2
    assert tally.wrong_members == 1 and tally.malformed == 1
    tally.sent = 4
    figures = tally.figures(seconds=0.1, cpu=0.05, players=2, rate=20)
    assert figures["inputs_unacked"] == 1 and figures["input_loss"] == 0.25
    assert figures["snapshot_loss"] == 0.25  # 3 of 4 expected (2 players, 2 ticks)
    assert figures["loss"] == 0.25


def test_inputs_outside_the_window_are_not_counted():
    tally = TickTally(bots=1, size=2, seq=[5], offset_ns=0, rate=20)
    tally.window = (100 * MS, 200 * MS)
    assert INPUT.unpack_from(tally.input(0, 50 * MS)) == (6,)  # numbering goes on from seq
    tally.input(0, 250 * MS)
    tally.snapshot(0, snap(300, 7), 300 * MS)
    assert tally.acked == 0 and tally.delivered == 0


def test_the_members_of_a_room_send_spread_over_the_period():
    order = capacity.spread(12, 4)  # rooms 0-3, 4-7, 8-11
    assert order == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert sorted(capacity.spread(800, 8)) == list(range(800))


# -- the ramp and its verdicts -----------------------------------------------------------------


def test_ramp_steps_are_whole_rooms_growing_to_the_maximum():
    assert ramp(200, 8, 1000, factor=1.25) == [200, 256, 320, 400, 504, 632, 792, 992, 1000]
    assert ramp(10, 8, 40, step=10) == [16, 32, 40]  # rounded up to rooms, +10 is still a room
    assert ramp(3, 4, 13, factor=1.01) == [4, 8, 12]  # at least one room a step, max rounded down
    assert ramp(5000, 8, 100) == [96]  # the start is capped at the maximum
    assert ramp(1, 8, 3) == [8]  # at least one room


def step(players, loss=0.0, p99_ms=5.0, sent=1.0, loadgen_cpu=0.5, lost=0, loadgen_drops=0):
    asked = players * 20.0
    figures = {"players": players, "loss": loss, "p99_us": p99_ms * 1000,
               "asked_per_s": asked, "sent_per_s": asked * sent, "loadgen_cpu": loadgen_cpu,
               "lost": lost, "socket_drops": {"server": 0, "loadgen": loadgen_drops}}
    figures.update(judge(figures))
    return figures


def test_judge_applies_both_limits():
    assert judge(step(8)) == {"passed": True, "failed": [], "generator_bound": False}
    assert step(8, loss=0.011)["failed"] == ["loss"]
    assert step(8, p99_ms=20.5)["failed"] == ["p99"]
    assert step(8, loss=0.5, p99_ms=90)["failed"] == ["loss", "p99"]
    assert step(8, loss=0.01, p99_ms=20)["passed"]  # the limits themselves hold
    nothing = step(8)
    nothing.update(loss=None, p99_us=None)
    assert judge(nothing)["failed"] == ["loss", "p99"]
    assert judge(step(8, loss=0.03), max_loss=0.05)["passed"]


def test_judge_blames_the_generator_when_it_was_the_limit():
    assert step(8, sent=0.9)["generator_bound"]  # could not send the asked rate
    assert step(8, sent=0.9)["passed"]  # ... whatever the server did with it
    assert step(8, loss=0.2, loadgen_cpu=0.95)["generator_bound"]  # failed with its core full
    assert not step(8, loadgen_cpu=0.95)["generator_bound"]  # busy but everything held
    assert step(8, loss=0.2, lost=100, loadgen_drops=60)["generator_bound"]  # it dropped them
    assert not step(8, loss=0.2, lost=100, loadgen_drops=10)["generator_bound"]
    assert not step(8, p99_ms=50, loadgen_drops=10)["generator_bound"]


def test_a_step_counts_its_first_clean_pass_else_the_round_nearest_to_passing():
    clean = best_round([step(8, p99_ms=30), step(8, p99_ms=3), step(8, p99_ms=2)])
    assert clean["p99_us"] == 3000 and clean["rounds"] == 3 and clean["rounds_passed"] == 2
    near = best_round([step(8, loss=0.5), step(8, p99_ms=25), step(8, p99_ms=40)])
    assert near["p99_us"] == 25000 and near["rounds_passed"] == 0 and not near["passed"]
    # A pass that the generator could not load fully is no pass; the server's failure counts.
    mixed = best_round([step(8, sent=0.5), step(8, loss=0.02)])
    assert mixed["loss"] == 0.02 and not mixed["generator_bound"]
    assert best_round([step(8, sent=0.5)])["generator_bound"]


def test_players_per_core_is_the_last_step_held_before_the_first_failure():
    curve = [step(200), step(256), step(320, p99_ms=25)]
    assert conclude(curve, cores=1) == {"players_held": 256, "players_per_core": 256,
                                        "limited_by": "server", "generator_bound": False,
                                        "lower_bound": False}
    assert conclude(curve, cores=2)["players_per_core"] == 128


def test_a_generator_bound_step_ends_the_ramp_as_a_lower_bound():
    result = conclude([step(200), step(256), step(320, sent=0.5)], cores=1)
    assert result["players_held"] == 256 and result["limited_by"] == "generator"
    assert result["generator_bound"] and result["lower_bound"]
    failed = conclude([step(200), step(256, loss=0.3, loadgen_cpu=0.99)], cores=1)
    assert failed["players_held"] == 200 and failed["limited_by"] == "generator"


def test_every_step_held_or_none_held():
    assert conclude([step(8), step(16)], cores=1)["limited_by"] == "max_players"
    assert conclude([step(8), step(16)], cores=1)["lower_bound"]
    none = conclude([step(8, loss=0.5)], cores=1)
    assert none["players_per_core"] is None and none["players_held"] is None
    assert none["limited_by"] == "server"


# -- the real command -----------------------------------------------------------------------


def run_capacity(plugin_path, tmp_path, *args):
    out = tmp_path / "capacity.json"
    # Limits no run misses, so that a busy machine still ramps through both steps.
    result = run_cli(plugin_path, "bench", "capacity", "--start", "8", "--factor", "2",
                     "--max-players", "16", "--room-size", "4", "--seconds", "0.5",
                     "--warmup", "0.3", "--max-loss", "0.9", "--max-p99-ms", "60000",
                     *args, "--json", str(out), timeout=100)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result


@pytest.mark.network
@pytest.mark.timeout(120)
def test_bench_capacity_tick(plugin_path, tmp_path):
    figures, result = run_capacity(plugin_path, tmp_path)
    assert figures["benchmark"] == "capacity" and figures["settings"]["mode"] == "tick"
    assert figures["settings"]["ramp"] == [8, 16]
    assert [s["players"] for s in figures["curve"]] == [8, 16]
    assert figures["players_held"] == 16 and figures["limited_by"] == "max_players"
    assert figures["players_per_core"] == 16 / figures["server_cores"]
    for s in figures["curve"]:
        # The real SnapshotRoom acknowledged the bots' inputs in its snapshots.
        assert s["inputs_acked"] >= 0.5 * s["sent"] > 0 and s["snapshots"] > 0, s
        assert s["acks_beyond_sent"] == 0 and s["wrong_members"] == 0 and s["malformed"] == 0
        assert s["strays"] == 0 and s["unknown_room_datagrams"] == 0
        for key in ("p50_us", "p99_us", "input_to_snapshot_p99_us", "server_cpu",
                    "loadgen_cpu"):
            assert s[key] is not None and s[key] >= 0, key
        assert 0 <= s["loss"] <= 1 and s["passed"] and not s["generator_bound"]
        assert s["asked_per_s"] == s["players"] * 20
    assert figures["server_log_tracebacks"] == 0
    for key in ("machine", "load_before", "load_after", "settings", "udp_io"):
        assert key in figures
    assert "players_per_core" in result.stdout and ">= 16" in result.stdout
    assert "16 players" in result.stderr  # the progress line


@pytest.mark.network
@pytest.mark.timeout(120)
def test_bench_capacity_relay_with_a_chart(plugin_path, tmp_path):
    need_matplotlib()
    png = tmp_path / "capacity.png"
    figures, result = run_capacity(plugin_path, tmp_path, "--mode", "relay", "--chart", str(png),
                                   "--udp-io", "plain", "--udp-rcvbuf", "1048576")
    assert figures["settings"]["mode"] == "relay"
    assert figures["udp_io"] == "plain" and "server udp i/o" in result.stdout
    assert figures["settings"]["udp_rcvbuf"] == 1048576
    for s in figures["curve"]:
        assert s["delivered"] > 0 and s["expected"] == s["sent"] * 3
        assert s["cross_room_leaks"] == 0 and s["misattributed"] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "from 1 capacity results" in result.stdout


def test_bench_capacity_refuses_bad_settings_in_one_line(plugin_path):
    for args, words in ((["--rate", "100"], "at most 60"),
                        (["--room-size", "1"], "--room-size"),
                        (["--max-loss", "1.5"], "--max-loss"),
                        (["--mode", "relay", "--payload", "3"], "--payload")):
        result = run_cli(plugin_path, "bench", "capacity", *args, timeout=30)
        assert result.returncode != 0 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_bench_report_draws_capacity_curves(plugin_path, tmp_path):
    need_matplotlib()
    paths = []
    for mode in ("tick", "relay"):
        curve = [step(n, loss=0.001 * n / 8) for n in (8, 16, 24)]
        for s in curve:
            s.update(p50_us=300.0, server_cpu=0.1 * s["players"] / 8, loadgen_cpu=0.2)
        path = tmp_path / "{}.json".format(mode)
        path.write_text(json.dumps({
            "benchmark": "capacity", "curve": curve, "players_per_core": 16, "players_held": 16,
            "lower_bound": False, "load_before": [0.5, 0.4, 0.3],
            "machine": {"cpus": 2, "cpu_model": "test"},
            "settings": {"mode": mode, "rate": 20, "room_size": 8, "max_loss": 0.01,
                         "max_p99_ms": 20}}))
        paths.append(str(path))
    result = report(plugin_path, paths, tmp_path / "capacity.png")
    assert "from 2 capacity results" in result.stdout


def test_summary_rows_show_the_curve_and_the_verdicts():
    result = {"settings": {"mode": "tick", "room_size": 8, "rate": 20, "max_loss": 0.01,
                           "max_p99_ms": 20},
              "curve": [dict(step(8), p50_us=1.0, input_to_snapshot_p99_us=2.0, server_cpu=0.1,
                             max_stall_ms=1.0),
                        dict(step(16, sent=0.5), p50_us=1.0, input_to_snapshot_p99_us=2.0,
                             server_cpu=0.1, max_stall_ms=1.0)],
              "notes": ["a note"]}
    result.update(conclude(result["curve"], cores=1))
    rows = dict(capacity.summary_rows(result))
    assert rows["players_per_core"] == ">= 8" and rows["limited by"] == "generator"
    assert rows["  16"].endswith("pass (generator-bound)")
    assert rows["note"] == "a note"


def test_step_notes_say_who_was_the_limit():
    busy_server = dict(step(800, p99_ms=30), server_cpu=0.3, max_stall_ms=50.0, rounds=2)
    saturated = dict(step(1600, loss=0.2), server_cpu=0.98, max_stall_ms=5.0, rounds=2)
    starved_generator = dict(step(2400, sent=0.7, loadgen_cpu=0.4), server_cpu=0.9)
    notes = capacity.step_notes([step(400), busy_server, saturated, starved_generator])
    assert len(notes) == 3  # nothing about the step that passed
    assert notes[0].startswith("800 players failed p99 in 2 rounds")
    assert "far from a full core" in notes[0] and "stall 50.0 ms" in notes[0]
    assert notes[1].startswith("1600 players failed loss") and "far from" not in notes[1]
    assert notes[2].startswith("2400 players: the load generator was the limit, not the server")
    assert "33,600/s of 48,000/s" in notes[2] and "did not get its core" in notes[2]
