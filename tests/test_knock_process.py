"""Knocking end to end: a real ``twistd gamesession --knock ...`` and the real
``gamesession ping --knock`` / stock ``knock -u`` clients, over loopback."""

import os
import shutil
import socket
import stat
import subprocess

import pytest

from conftest import knock_ports, need, run_cli

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]


def shut_out(port):
    """The login port says nothing and closes: no byte before the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


def assert_shut_out_of_login(result):
    """The gate reset the login connection: one line on stderr saying so (seen
    after connecting or, when the reset wins the race, while connecting)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert ("closed by the server before the login completed" in lines[0]
            or "Connection reset by peer" in lines[0]), result.stderr


def ping(plugin_path, server, *extra):
    return run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(server.login_port),
                   "--server-key", server.public_key, "--count", "2", "--interval", "0.05",
                   "--timeout", "3", *extra)


def test_classic_knocking(start_server, plugin_path):
    ports = knock_ports()
    sequence = ",".join(map(str, ports))
    server = start_server("--knock", sequence, "--knock-grant", "30")

    assert shut_out(server.login_port)
    refused = ping(plugin_path, server)
    assert refused.returncode == 1
    assert_shut_out_of_login(refused)

    result = ping(plugin_path, server, "--knock", sequence)
    assert result.returncode == 0, result.stderr
    assert "2 received" in result.stdout

    assert server.stop() == 0
    log = server.log()
    assert "login gated behind 3 classic UDP knocks" in log
    assert "knock: granted 127.0.0.1" in log
    assert "knock summary" in log
    assert "Traceback" not in log


def test_stock_knock_client_then_plain_ping(start_server, plugin_path):
    need(shutil.which("knock"), "the stock `knock` client is not installed (apt-get install knockd)")
    ports = knock_ports()
    server = start_server("--knock", ",".join(map(str, ports)))
    assert shut_out(server.login_port)
    subprocess.run(["knock", "-u", "-d", "20", "127.0.0.1", *map(str, ports)], check=True, timeout=10)
    result = ping(plugin_path, server)
    assert result.returncode == 0, result.stderr


def test_random_sequence_file_and_authenticated_knocks(start_server, plugin_path, tmp_path):
    seq_file, secret = str(tmp_path / "knock.txt"), str(tmp_path / "knock.secret")
    made = run_cli(plugin_path, "knock-secret", "--file", secret)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    server = start_server("--knock-random", "10", "--knock-file", seq_file,
                          "--knock-secret", secret, "--knock-reply")
    assert stat.S_IMODE(os.stat(seq_file).st_mode) == 0o600

    classic = ping(plugin_path, server, "--knock", "@" + seq_file)
    # Classic knocks do not open an authenticated gate: the login is shut out.
    assert classic.returncode == 1
    assert_shut_out_of_login(classic)
    result = ping(plugin_path, server, "--knock", "@" + seq_file, "--knock-secret", secret)
    assert result.returncode == 0, result.stderr
    assert server.stop() == 0
    assert "10 authenticated UDP knocks" in server.log()


def test_bad_knock_options_fail_clearly(plugin_path, tmp_path):
    from conftest import child_env
    import sys

    def twistd(*options):
        return subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "gamesession", "--key-file", str(tmp_path / "k"), *options],
            env=child_env(plugin_path), capture_output=True, text=True, timeout=30)

    # twistd's usage error: status 1, the usage then one line naming the error
    # (both on stdout), no traceback.
    for options, error in [
            (("--knock-random", "5", "--knock-file", str(tmp_path / "f")),
             "--knock-random takes 10 to 100 ports, not 5"),
            (("--knock", "7101,7101"), "knock ports must be unique; repeated: 7101")]:
        result = twistd(*options)
        assert result.returncode == 1, result.stderr
        assert error in result.stdout.strip().splitlines()[-1], result.stdout[-500:]
        assert "Traceback" not in result.stdout + result.stderr
