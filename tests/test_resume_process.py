"""Acceptance: the real ``gamesession ping`` through a proxy that cuts the control connection.

A real twistd server, the real command in a subprocess, and a loopback proxy
(tests/tcpproxy.py) between them on the TCP side only (UDP goes straight to
the server, as it would when only the TCP path broke).  Halfway through the
pings the proxy cuts the connection: a reset, or a silent black-hole of 3 s
(then a reset).  The pings must go on, the session must resume once, and the
server must have logged one login and one resume.
"""

import re
import time

import pytest

from conftest import run_cli
from tcpproxy import CuttingProxy

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]

SUMMARY = re.compile(r"^100 sent, (\d+) received, (\d+)% loss, rtt min/avg/max = "
                     r"[\d.]+/[\d.]+/[\d.]+ ms, 1 resumed$")


@pytest.mark.parametrize("mode", ["rst", "blackhole"])
def test_ping_resumes_across_a_cut_control_connection(start_server, plugin_path, mode):
    # keepalive 0.5 s: the client notices a silent connection within about a second.
    server = start_server("--auth", "memory:alice:secret", "--keepalive", "0.5")
    proxy = CuttingProxy(server.login_port, lifetime=60)
    try:
        proxy.cut_later(2.5, mode, hold=3.0)
        started = time.monotonic()
        result = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(proxy.port),
                         "--server-key", server.public_key, "--user", "alice",
                         "--password", "secret", "--count", "100", "--interval", "0.05",
                         timeout=60)
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, result.stdout
    assert int(match.group(1)) >= 91  # loss under 10 %
    assert "reconnecting..." in result.stdout and "resumed the session" in result.stdout
    assert proxy.accepted == 2
    first, second = proxy.links
    assert first.cut_at is not None
    if mode == "blackhole":
        # Noticed by the client's TCP ping, not by the reset at the end of the hold.
        assert second.opened_at < first.cut_at + 3.0
    log = server.log()
    assert log.count("login ok: user=alice") == 1
    assert log.count("resume ok: user=alice") == 1
    assert log.count("session suspended: user=alice") == (1 if mode == "rst" else 0)
    assert "reason=logout" in log and "Traceback" not in log
    assert elapsed < 30
