"""``pip install .`` into a fresh venv exposes the twistd plugin and the console script,
and its plugin cache stays fresh when site-packages is read-only (the Docker image)."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, need
from gamesession.bench.procs import free_port, stop_process, wait_for_tcp

pytestmark = [pytest.mark.timeout(600)]


class Venv:
    def __init__(self, path):
        self.path = path
        self.bin = path / "bin"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def site_packages(self):
        done = subprocess.run([str(self.bin / "python"), "-c",
                               "import twisted, os; print(os.path.dirname(os.path.dirname("
                               "twisted.__file__)))"],
                              capture_output=True, text=True, check=True, env=self.env)
        return done.stdout.strip()

    def plugins(self):
        return os.path.join(self.site_packages(), "twisted", "plugins")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with ``pip install .`` of a copy of the checkout."""
    top = tmp_path_factory.mktemp("install")
    path = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    # Build from a copy so the checkout gets no build/ or egg-info litter.
    source = top / "src"
    subprocess.run(["cp", "-r", ROOT, str(source)], check=True)
    result = subprocess.run([str(path / "bin" / "pip"), "install", "-q", str(source)],
                            capture_output=True, text=True)
    need(result.returncode == 0 or "Could not find a version" not in result.stderr,
         "pip could not reach a package index: " + result.stderr[-300:])
    assert result.returncode == 0, result.stderr[-2000:]
    return Venv(path)


def test_installed_plugin_works_outside_the_checkout(venv, tmp_path):
    bin_dir = venv.bin
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = venv.env
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


# -- the plugin cache in a read-only site-packages (issue 12, item 14) ---------------


def read_only_command(site_packages: str, argv: list) -> "tuple[list, callable]":
    """``argv`` run with ``site_packages`` read-only, and an undo for afterwards.

    As root (whom file modes do not stop) a private mount namespace binds
    site-packages read-only over itself; as another user, ``chmod -R a-w``.
    """
    if os.geteuid() == 0:
        need(shutil.which("unshare") is not None and subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode == 0,
            "unshare -m is needed to make site-packages read-only for root")
        script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"')
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                site_packages] + argv, lambda: None
    subprocess.run(["chmod", "-R", "a-w", site_packages], check=True)
    return argv, lambda: subprocess.run(["chmod", "-R", "u+w", site_packages], check=True)


def start_read_only(venv, tmp_path, run: int) -> str:
    """Start the installed server with site-packages read-only; return its output."""
    login_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    argv = [str(venv.bin / "twistd"), "-n", "--pidfile=", "--logfile=-", "gamesession",
            "--login", "tcp:{}:interface=127.0.0.1".format(login_port),
            "--udp", str(udp_port), "--interface", "127.0.0.1",
            "--key-file", str(tmp_path / "server.key")]
    argv, undo = read_only_command(venv.site_packages(), argv)
    out_path = tmp_path / "server-{}.out".format(run)
    try:
        with open(out_path, "w") as out:
            process = subprocess.Popen(argv, cwd=str(tmp_path), env=venv.env, stdout=out,
                                       stderr=subprocess.STDOUT)
        try:
            wait_for_tcp(login_port, process, 30)
        finally:
            stop_process(process)
    finally:
        undo()
    return out_path.read_text()


def set_times(directory: str, seconds: "float | None" = None) -> None:
    """Every file's time to ``seconds``, or to its own whole second (the classic builder)."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        t = int(os.stat(path).st_mtime) if seconds is None else seconds
        os.utime(path, (t, t))


@pytest.mark.network
def test_plugin_cache_stays_fresh_in_a_read_only_install(venv, tmp_path):
    plugins = venv.plugins()
    cache = os.path.join(plugins, "dropin.cache")
    warning = "Unable to write to plugin cache"
    # What the classic builder made of the old image: the cache as old as the plugins.
    subprocess.run([str(venv.bin / "python"), "-c",
                    "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"],
                   env=venv.env, check=True)
    set_times(plugins, int(time.time()) - 60)
    output = start_read_only(venv, tmp_path, 0)
    assert warning in output  # the check sees the stale cache
    # What the Dockerfile does now, then the same rounding to whole seconds.
    done = subprocess.run([str(venv.bin / "python"), "-m", "gamesession.server.plugincache"],
                          env=venv.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert cache in done.stdout
    set_times(plugins)
    assert all(os.stat(os.path.join(plugins, n)).st_mtime < os.stat(cache).st_mtime
               for n in os.listdir(plugins) if n.endswith(".py"))
    output = start_read_only(venv, tmp_path, 1)
    assert warning not in output, output
    assert "Traceback" not in output


def test_the_dockerfile_refreshes_the_plugin_cache_after_installing():
    with open(os.path.join(ROOT, "docker", "Dockerfile")) as f:
        text = f.read()
    install = text.index("pip install /src")
    assert text.index("python -m gamesession.server.plugincache", install) > install
