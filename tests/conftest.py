"""Shared fixtures: a real ``twistd gamesession`` subprocess on loopback.

twistd finds plugins only in ``twisted/plugins`` directories on sys.path, so
the fixture copies the plugin file into a temporary ``twisted/plugins`` and
puts that directory and the checkout on PYTHONPATH (an installed copy is
tested separately, in test_install.py).
"""

import importlib
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
from nacl.public import PrivateKey

from gamesession.bench.procs import free_port, stop_process, wait_for_tcp
from gamesession.keys import encode_key, write_private_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_CI = bool(os.environ.get("CI"))


def examples(n: int) -> int:
    """Hypothesis examples for a property test: ``n``, scaled by the
    GAMESESSION_EXAMPLES factor (the mutation run, docs/testing.md, uses 0.1)."""
    return max(10, int(n * float(os.environ.get("GAMESESSION_EXAMPLES", "1"))))


def need_module(name: str):
    """The module, or a skip when it is not installed; in CI a missing module
    that .ci/run installs (the package's requirements and its test extra) fails."""
    if IN_CI:
        return importlib.import_module(name)
    return pytest.importorskip(name)


def need(condition: bool, reason: str) -> None:
    """Skip a test that cannot run here, but fail it in CI where it must run."""
    if not condition:
        if IN_CI:
            pytest.fail("CI must run this test: " + reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory):
    top = tmp_path_factory.mktemp("plugin")
    plugins = top / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "twisted_plugins", "gamesession_plugin.py"), plugins)
    return str(top)


class ServerProcess:
    """A running ``twistd -n gamesession``; its log is in ``self.log_path``."""

    def __init__(self, process, login_port, udp_port, public_key, log_path, key_file):
        self.process = process
        self.login_port = login_port
        self.udp_port = udp_port
        self.public_key = public_key
        self.log_path = log_path
        self.key_file = key_file

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=15, timeout=5.0):
        return stop_process(self.process, sig, timeout)


def wait_for_port(port: int, timeout: float = 10.0, process=None) -> None:
    wait_for_tcp(port, process, timeout)


def knock_ports(n=3):
    """``n`` free UDP ports for a knock sequence, unsorted (the server warns about sorted ones)."""
    ports = set()
    while len(ports) < n:
        ports.add(free_port(socket.SOCK_DGRAM))
    ports = sorted(ports)
    return ports[1:] + ports[:1]


def login_endpoint(port: int, host: str = "127.0.0.1") -> str:
    """The ``--login`` endpoint listening on ``host`` (IPv4 or IPv6)."""
    if ":" in host:
        return "tcp6:{}:interface={}".format(port, host.replace(":", "\\:"))
    return "tcp:{}:interface={}".format(port, host)


def child_env(plugin_path: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([plugin_path, ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


# Like the installed ``twistd`` script: the current directory is not on sys.path
# (``python -c`` would put it there).
TWISTD = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
          "from twisted.scripts.twistd import run; run()")


@pytest.fixture
def start_server(plugin_path, tmp_path):
    """Start a real twistd gamesession with extra options; stopped at teardown."""
    servers = []

    def start(*options, wait=True, host="127.0.0.1", key=None):
        """``host``: the loopback address both ports bind ("::1" for IPv6);
        ``key``: a PrivateKey to share (the nodes of a cluster), default a fresh one."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        login_port = free_port(family=family, host=host)
        udp_port = free_port(socket.SOCK_DGRAM, family=family, host=host)
        key = key if key is not None else PrivateKey.generate()
        key_file = str(tmp_path / "server-{}.key".format(len(servers)))
        write_private_key(key_file, key)
        log_path = str(tmp_path / "twistd-{}.log".format(len(servers)))
        argv = [
            sys.executable, "-c", TWISTD,
            "-n", "--pidfile=", "--logfile=" + log_path, "gamesession",
            "--login", login_endpoint(login_port, host),
            "--udp", str(udp_port), "--interface", host,
            "--key-file", key_file,
        ] + list(options)
        process = subprocess.Popen(argv, env=child_env(plugin_path), cwd=str(tmp_path),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = ServerProcess(process, login_port, udp_port,
                               encode_key(bytes(key.public_key)), log_path, key_file)
        servers.append(server)
        if wait:
            try:
                wait_for_tcp(login_port, process, 30.0, host=host)
            except RuntimeError as e:
                if process.poll() is None:
                    process.kill()  # still starting: its stderr ends only when it does
                raise RuntimeError("twistd did not start ({}): {}".format(
                    e, process.stderr.read().decode()))
        return server

    yield start
    for server in servers:
        server.stop()  # SIGTERM: a clean exit, so coverage writes its data


CLI = [sys.executable, "-c", "import sys; from gamesession.client.cli import main; sys.exit(main())"]


def run_cli(plugin_path, *args, timeout=30, env=None, **run):
    """Run ``gamesession ...`` as a user would; returns CompletedProcess.

    ``env``: extra environment variables for the command; ``run`` goes to
    subprocess.run (``input="..."`` feeds stdin, else stdin is /dev/null).
    """
    full_env = child_env(plugin_path)
    full_env.update(env or {})
    if "input" not in run:
        run["stdin"] = subprocess.DEVNULL
    return subprocess.run(CLI + list(args), env=full_env, capture_output=True, text=True,
                          timeout=timeout, **run)


class Interactive:
    """A child process driven line by line: ``send`` lines to its stdin,
    ``expect`` lines on its stdout (a reader thread queues them)."""

    def __init__(self, argv, env):
        self.argv = argv
        self.process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, bufsize=1)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, text: str, timeout: float = 10.0, fail: bool = True) -> "str | None":
        """The next line that contains ``text``; after ``timeout`` seconds without
        one, fails the test (or returns None with ``fail=False``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, left))
            except queue.Empty:
                line = ""
                left = 0
            if left <= 0 and line is not None and not fail:
                return None
            if line is None or left <= 0:
                self.process.kill()
                raise AssertionError("no line with {!r} from {}; saw {!r}; stderr {!r}".format(
                    text, self.argv[-1], self.seen, self.process.stderr.read()))
            self.seen.append(line)
            if text in line:
                return line

    def rest(self, timeout: float = 10.0) -> list:
        """Every line still to come, until the process closes stdout."""
        lines = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
        self.seen += lines
        return lines

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 10.0) -> "tuple[int, str]":
        """Close stdin and wait: (exit status, stderr)."""
        if not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def interactive(plugin_path):
    """``interactive(argv)`` (or ``interactive.cli(*args)``) starts an Interactive; all are killed at teardown."""
    started = []

    def start(argv):
        child = Interactive(list(argv), child_env(plugin_path))
        started.append(child)
        return child

    start.cli = lambda *args: start(CLI + list(args))
    yield start
    for child in started:
        child.kill()


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server on a free loopback port (``.url``, ``.stop()``, ``.start()``); stopped at teardown."""
    from redisserver import RedisServer, have_redis

    need(have_redis(), "redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop(sig=9)
