"""A real ``redis-server`` on a free loopback port, for the tests and benchmarks that need Redis.

No persistence (``--save ''``, no AOF): a restart starts empty, the worst case
for a node that must re-register what it holds.
"""

import shutil
import socket
import subprocess
import time

from gamesession.bench.procs import free_port, stop_process


class RedisServer:
    def __init__(self, workdir, port=None, tls=None, password=None):
        """``tls``: (cert file, key file) to serve TLS only; ``password``: requirepass."""
        self.workdir = str(workdir)
        self.port = port or free_port()
        self.process = None
        self.tls = tls
        self.password = password

    @property
    def url(self) -> str:
        return "{}://127.0.0.1:{}/0".format("rediss" if self.tls else "redis", self.port)

    def start(self, timeout=10.0):
        argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.workdir, "--loglevel", "warning"]
        if self.tls:
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls[0],
                     "--tls-key-file", self.tls[1], "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        ready = self._port_open if self.tls else self._answers_ping
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start on port {}".format(self.port))
            time.sleep(0.05)
        return self

    def _port_open(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def command(self, *words, db=0) -> bytes:
        """One inline command over a fresh connection (in database ``db``); the raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            if self.password:
                s.sendall(b"AUTH " + self.password.encode() + b"\r\n")
                s.recv(64)
            if db:
                s.sendall(b"SELECT %d\r\n" % db)
                s.recv(64)
            s.sendall(" ".join(words).encode() + b"\r\n")
            return s.recv(65536)

    def stop(self, sig=15):
        if self.process is not None:
            stop_process(self.process, sig, 5.0)
            self.process = None


def have_redis() -> bool:
    return shutil.which("redis-server") is not None


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it, with the openssl command.

    Returns (ca.pem, server.pem, server.key) paths, or None without openssl.
    """
    if shutil.which("openssl") is None:
        return None
    d = str(directory)

    def run(*argv):
        subprocess.run(["openssl"] + list(argv), cwd=d, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=gamesession test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(d + "/ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext")
    return d + "/ca.pem", d + "/server.pem", d + "/server.key"
