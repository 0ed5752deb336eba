"""A real server with --metrics: log in with `gamesession ping`, scrape, status, healthcheck.

And the JSON-lines logging recipe: ``twistd --logger gamesession.ops.jsonlog.logger``.
"""

import json
import socket
import subprocess
import sys
import urllib.request

import pytest

from gamesession.client.status import Figures

from conftest import child_env, free_port, run_cli, wait_for_port

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]

HOLD_SESSION = (
    "from twisted.internet import task\n"
    "from gamesession.client import GameClient\n"
    "from gamesession.keys import read_public_key\n"
    "async def main(reactor):\n"
    "    c = await GameClient.connect(reactor, '127.0.0.1', {port}, read_public_key('{key}'),\n"
    "                                 'bob', 'hunter2')\n"
    "    print('in', flush=True)\n"
    "    await c.wait_closed()\n"
    "task.react(main)\n"
)


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:{}/metrics".format(port), timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return Figures(r.read().decode()).samples


def test_metrics_show_the_session_the_login_and_the_packets(start_server, plugin_path):
    metrics_port = free_port()
    server = start_server("--metrics", "tcp:{}:interface=127.0.0.1".format(metrics_port),
                          "--auth", "memory:alice:secret:bob:hunter2",
                          "--keepalive", "0.2", "--session-timeout", "5")
    wait_for_port(metrics_port, process=server.process)
    before = scrape(metrics_port)
    assert before[("gamesession_sessions_active", ())] == 0
    assert before[("gamesession_logins_total", (("outcome", "ok"),))] == 0

    # Idle gaps longer than --keepalive: the server pings the client and times the pong.
    result = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(server.login_port),
                     "--server-key", server.public_key, "--user", "alice", "--password", "secret",
                     "--count", "3", "--interval", "0.6")
    assert result.returncode == 0, result.stderr
    refused = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(server.login_port),
                      "--server-key", server.public_key, "--user", "alice", "--password", "nope")
    assert refused.returncode == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
        junk.sendto(b"junk", ("127.0.0.1", server.udp_port))

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SESSION.format(port=server.login_port, key=server.public_key)],
        env=child_env(plugin_path), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "in"
        figures = scrape(metrics_port)
        assert figures[("gamesession_sessions_active", ())] == 1
        assert figures[("gamesession_logins_total", (("outcome", "ok"),))] == 2
        assert figures[("gamesession_logins_total", (("outcome", "auth_failed"),))] == 1
        assert figures[("gamesession_logouts_total", (("reason", "logout"),))] == 1
        assert figures[("gamesession_udp_datagrams_total", (("direction", "in"),))] >= 5
        assert figures[("gamesession_udp_datagrams_total", (("direction", "out"),))] >= 3
        assert figures[("gamesession_udp_bytes_total", (("direction", "in"),))] > 0
        assert figures[("gamesession_rtt_seconds_count", ())] >= 1
        # Two pings and the holder (the fixture's port probe came before `before`).
        assert (figures[("gamesession_tcp_connections_total", ())]
                - before[("gamesession_tcp_connections_total", ())]) == 3

        # The junk datagram may still be in flight: poll a bounded number of scrapes.
        for _ in range(50):
            if figures[("gamesession_udp_dropped_total", (("reason", "short"),))] == 1:
                break
            figures = scrape(metrics_port)
        assert figures[("gamesession_udp_dropped_total", (("reason", "short"),))] == 1

        status = run_cli(plugin_path, "status", "--metrics-url",
                         "http://127.0.0.1:{}/metrics".format(metrics_port))
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert "sessions: 1 active (max 10000)" in lines
        assert "logins: 2 ok, 1 failed (auth_failed 1)" in lines
        assert "dropped: 1 (short 1)" in lines
        assert any(line.startswith("udp in: ") for line in lines)
        assert any(line.startswith("rtt: p50 ~") for line in lines)
    finally:
        holder.kill()
        holder.wait()
    log = server.log()
    assert "Traceback" not in log
    assert "/metrics" not in log  # no access-log line per scrape


def test_healthcheck(start_server, plugin_path, tmp_path):
    server = start_server()
    where = "127.0.0.1:{}".format(server.login_port)
    ok = run_cli(plugin_path, "healthcheck", "--server", where)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("healthy: ")
    keyed = run_cli(plugin_path, "healthcheck", "--server", where, "--key-file", server.key_file, "-q")
    assert (keyed.returncode, keyed.stdout) == (0, "")
    other = run_cli(plugin_path, "keygen", "--key-file", str(tmp_path / "other.key")).stdout.strip()
    wrong = run_cli(plugin_path, "healthcheck", "--server", where, "--server-key", other)
    assert wrong.returncode == 1
    assert "server key mismatch" in wrong.stderr
    framing = run_cli(plugin_path, "healthcheck", "--server", where, "--framing", "line",
                      "--timeout", "1")
    assert framing.returncode == 1
    closed = run_cli(plugin_path, "healthcheck", "--server", "127.0.0.1:{}".format(free_port()))
    assert closed.returncode == 1
    assert "connection refused" in closed.stderr
    assert "Traceback" not in server.log()


def test_json_lines_logging_recipe(plugin_path, tmp_path):
    """`twistd --logger gamesession.ops.jsonlog.logger -n gamesession` writes one JSON event a line."""
    login_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    log_path = tmp_path / "events.jsonl"
    env = dict(child_env(plugin_path), GAMESESSION_LOG_FILE=str(log_path))
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "--logger", "gamesession.ops.jsonlog.logger", "-n", "--pidfile=", "gamesession",
         "--login", "tcp:{}:interface=127.0.0.1".format(login_port),
         "--udp", str(udp_port), "--interface", "127.0.0.1",
         "--key-file", str(tmp_path / "server.key")],
        env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(login_port, process=process)
        key = run_cli(plugin_path, "pubkey", "--key-file", str(tmp_path / "server.key"))
        result = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(login_port),
                         "--server-key", key.stdout.strip(), "--user", "carol", "--count", "1")
        assert result.returncode == 0, result.stderr
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    events = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert events and all(isinstance(e, dict) for e in events)
    by_event = {}
    for event in events:
        by_event.setdefault(event.get("event"), []).append(event)
    [login] = by_event["login"]
    assert (login["user"], login["outcome"], login["peer"]) == ("carol", "ok", "127.0.0.1")
    assert login["log_level"]["name"] == "info"
    [ended] = by_event["session_ended"]
    assert (ended["user"], ended["reason"]) == ("carol", "logout")
    assert "server_key" in by_event
    assert not any(e["log_level"]["name"] == "debug" for e in events)
