"""A real ``redis-server`` on a free loopback port, for the tests that need Redis.

No persistence (``--save ''``, no AOF): a restart starts empty, the worst case
for a node that must re-register what it holds.
"""

import shutil
import socket
import subprocess
import time

from gamesession.bench.procs import free_port, stop_process


class RedisServer:
    def __init__(self, workdir, port=None):
        self.workdir = str(workdir)
        self.port = port or free_port()
        self.process = None

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:{}/0".format(self.port)

    def start(self, timeout=10.0):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.workdir,
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start on port {}".format(self.port))
            time.sleep(0.05)

    def command(self, *words) -> bytes:
        """One inline command over a fresh connection; the raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(" ".join(words).encode() + b"\r\n")
            return s.recv(65536)

    def stop(self, sig=15):
        if self.process is not None:
            stop_process(self.process, sig, 5.0)
            self.process = None


def have_redis() -> bool:
    return shutil.which("redis-server") is not None
