"""A real twistd server and the real ``gamesession ping`` over loopback."""

import re
import socket
import time

import pytest

from conftest import run_cli

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

SUMMARY = re.compile(r"^(\d+) sent, (\d+) received, (\d+)% loss, rtt min/avg/max = "
                     r"[\d.]+/[\d.]+/[\d.]+ ms$")


def ping(plugin_path, server, *extra):
    return run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(server.login_port),
                   "--server-key", server.public_key, "--count", "3", "--interval", "0.05",
                   *extra)


def test_ping_logs_in_and_gets_pongs(start_server, plugin_path):
    server = start_server("--auth", "memory:alice:secret")
    result = ping(plugin_path, server, "--user", "alice", "--password", "secret")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, last
    assert match.group(1) == "3" and match.group(2) == "3"
    log = server.log()
    assert "session started: user=alice" in log
    assert "reason=logout" in log
    assert "Traceback" not in log


def test_wrong_password_fails_clearly(start_server, plugin_path):
    server = start_server("--auth", "memory:alice:secret")
    result = ping(plugin_path, server, "--user", "alice", "--password", "guess")
    assert result.returncode == 1
    assert result.stderr.strip() == "gamesession ping: auth failed: wrong user name or password"


def test_wrong_pinned_key_fails_clearly(start_server, plugin_path, tmp_path):
    server = start_server()
    other = run_cli(plugin_path, "keygen", "--key-file", str(tmp_path / "other.key"))
    assert other.returncode == 0
    result = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(server.login_port),
                     "--server-key", other.stdout.strip())
    assert result.returncode == 1
    assert "server key mismatch" in result.stderr


def test_line_framing_and_pubkey_file(start_server, plugin_path, tmp_path):
    server = start_server("--framing", "line")
    pub = tmp_path / "server.pub"
    printed = run_cli(plugin_path, "pubkey", "--key-file", server.key_file)
    pub.write_text(printed.stdout)
    result = ping(plugin_path, server, "--framing", "line", "--server-key", "@" + str(pub))
    assert result.returncode == 0, result.stderr
    assert "guests may log in" in server.log()


def test_refused_when_nothing_listens(plugin_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(port),
                     "--server-key", "A" * 43 + "=")
    assert result.returncode == 1
    assert "connection refused" in result.stderr


def test_sigterm_tells_clients_and_exits_zero_quickly(start_server, plugin_path):
    """A client logged in when SIGTERM arrives is told 'shutdown'; exit 0 within 2 s."""
    server = start_server()
    import subprocess
    import sys
    from conftest import child_env
    script = (
        "import sys\n"
        "from twisted.internet import task\n"
        "from gamesession.client import GameClient\n"
        "from gamesession.keys import read_public_key\n"
        "async def main(reactor):\n"
        "    c = await GameClient.connect(reactor, '127.0.0.1', {port}, read_public_key('{key}'), 'bob')\n"
        "    print('in', flush=True)\n"
        "    reason = await c.wait_closed()\n"
        "    print('ended', reason, flush=True)\n"
        "task.react(main)\n"
    ).format(port=server.login_port, key=server.public_key)
    client = subprocess.Popen([sys.executable, "-c", script], env=child_env(plugin_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "in"
        started = time.monotonic()
        assert server.stop(sig=15) == 0
        assert time.monotonic() - started < 2.0
        assert client.stdout.readline().strip() == "ended shutdown"
    finally:
        client.kill()
        client.wait()
    assert "reason=shutdown" in server.log()

