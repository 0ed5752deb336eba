"""The sans-I/O client core drives a login from plain asyncio (examples/asyncio_ping.py)."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, child_env

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


def test_asyncio_client_logs_in_pings_and_logs_out(start_server, plugin_path):
    server = start_server("--auth", "memory:dana:pw")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "asyncio_ping.py"), "127.0.0.1",
         str(server.login_port), server.public_key, "dana", "pw"],
        env=child_env(plugin_path), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("pong seq=") == 3
    assert "SessionEnded(reason='logout')" in result.stdout
    assert "reason=logout" in server.log()


@pytest.mark.parametrize("argv", [[], ["--help"], ["127.0.0.1"]])
def test_asyncio_example_explains_its_arguments(argv, plugin_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "asyncio_ping.py")] + argv,
        env=child_env(plugin_path), capture_output=True, text=True, timeout=30)
    assert "usage: asyncio_ping.py" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == (0 if argv == ["--help"] else 2)
