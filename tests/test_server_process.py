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



# -- first use: the hints a wrong option gets (issue 12) -----------------------------


def test_line_client_against_an_int16_server_names_the_framing(start_server, plugin_path):
    server = start_server()
    result = ping(plugin_path, server, "--framing", "line", "--timeout", "3")
    assert result.returncode == 1
    assert "not line-framed" in result.stderr and "try --framing int16" in result.stderr, \
        result.stderr
    assert result.stderr.count("\n") == 1


def test_int16_client_against_a_line_server_times_out_with_a_framing_hint(
        start_server, plugin_path):
    server = start_server("--framing", "line")
    result = ping(plugin_path, server, "--timeout", "1")
    assert result.returncode == 1
    assert "timed out" in result.stderr and "--framing" in result.stderr, result.stderr


def test_no_udp_back_says_so(start_server, plugin_path):
    server = start_server()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a port that never answers
        silent.bind(("127.0.0.1", 0))
        result = ping(plugin_path, server, "--udp-port", str(silent.getsockname()[1]),
                      "--timeout", "0.3")
    assert result.returncode == 1
    assert "3 sent, 0 received, 100% loss" in result.stdout
    assert "no UDP reply came back" in result.stderr and "--udp-port" in result.stderr, \
        result.stderr


def test_private_key_file_given_as_server_key_is_named(start_server, plugin_path):
    server = start_server()
    result = ping(plugin_path, server, "--server-key", "@" + server.key_file)
    assert result.returncode == 1
    assert "is the server's private key" in result.stderr, result.stderr
    assert "gamesession pubkey --key-file" in result.stderr


def test_password_from_a_file_or_the_environment(start_server, plugin_path, tmp_path):
    server = start_server("--auth", "memory:alice:secret")
    password_file = tmp_path / "password"
    password_file.write_text("secret\n")
    result = ping(plugin_path, server, "--user", "alice", "--password-file", str(password_file))
    assert result.returncode == 0, result.stderr
    result = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(server.login_port),
                     "--server-key", server.public_key, "--user", "alice", "--count", "1",
                     env={"GAMESESSION_PASSWORD": "secret"})
    assert result.returncode == 0, result.stderr
    # No password and no terminal: no prompt, the server's refusal.
    result = ping(plugin_path, server, "--user", "alice")
    assert result.returncode == 1 and "auth failed" in result.stderr


def test_password_prompt_on_a_terminal(start_server, plugin_path):
    import os
    import pty
    import select
    import subprocess

    from conftest import CLI, child_env

    server = start_server("--auth", "memory:alice:secret")
    master, slave = pty.openpty()
    env = child_env(plugin_path)
    env.pop("GAMESESSION_PASSWORD", None)
    process = subprocess.Popen(
        CLI + ["ping", "--server", "127.0.0.1:{}".format(server.login_port),
               "--server-key", server.public_key, "--user", "alice", "--count", "1"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 20
    try:
        while b"password for alice" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 4096)
        assert b"password for alice on 127.0.0.1:" in seen, seen
        os.write(master, b"secret\n")
        while process.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert process.wait(timeout=10) == 0, seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert b"1 sent, 1 received" in seen
    assert b"secret" not in seen.split(b"password for alice")[1].split(b"logged in")[0]


def test_app_module_in_the_current_directory(start_server, plugin_path, tmp_path):
    game = tmp_path / "mygame"
    game.mkdir()
    (game / "__init__.py").write_text("")
    (game / "server.py").write_text(
        "from gamesession.server.application import EchoApplication\n"
        "class Game(EchoApplication):\n"
        "    def session_started(self, session):\n"
        "        print('mygame session for', session.user)\n")
    server = start_server("--app", "mygame.server.Game")  # twistd runs in tmp_path
    result = ping(plugin_path, server)
    assert result.returncode == 0, result.stderr
    assert "mygame session for guest" in server.log()


def test_ping_an_ipv6_server(start_server, plugin_path):
    server = start_server(host="::1")
    result = run_cli(plugin_path, "ping", "--server", "[::1]:{}".format(server.login_port),
                     "--server-key", server.public_key, "--count", "2", "--interval", "0.05")
    assert result.returncode == 0, result.stderr
    assert "UDP to [::1]:{}".format(server.udp_port) in result.stdout
    assert SUMMARY.match(result.stdout.strip().splitlines()[-1])
