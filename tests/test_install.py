"""``pip install .`` into a fresh venv exposes the twistd plugin and the console script."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, need

pytestmark = [pytest.mark.timeout(600)]


def test_installed_plugin_works_outside_the_checkout(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    # Build from a copy so the checkout gets no build/ or egg-info litter.
    source = tmp_path / "src"
    subprocess.run(["cp", "-r", ROOT, str(source)], check=True)
    result = subprocess.run([str(bin_dir / "pip"), "install", "-q", str(source)],
                            capture_output=True, text=True)
    need(result.returncode == 0 or "Could not find a version" not in result.stderr,
         "pip could not reach a package index: " + result.stderr[-300:])
    assert result.returncode == 0, result.stderr[-2000:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    help_text = subprocess.run([str(bin_dir / "twistd"), "gamesession", "--help"], cwd=outside,
                               env=env, capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0, help_text.stderr
    for option in ("--login", "--udp", "--public-udp-port", "--framing", "--key-file",
                   "--auth", "--login-timeout", "--session-timeout", "--keepalive",
                   "--max-sessions", "--duplicate-login"):
        assert option in help_text.stdout
    listed = subprocess.run([str(bin_dir / "twistd"), "--help"], cwd=outside, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "gamesession" in listed.stdout
    keygen = subprocess.run([str(bin_dir / "gamesession"), "keygen", "--key-file", "k"],
                            cwd=outside, env=env, capture_output=True, text=True, timeout=60)
    assert keygen.returncode == 0 and len(keygen.stdout.strip()) == 44
