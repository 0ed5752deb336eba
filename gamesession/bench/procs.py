"""Starting, pinning and watching the processes of a benchmark.

The server under test is the real ``twistd -n gamesession`` in a subprocess,
found through a copy of the plugin file in a temporary ``twisted/plugins``
directory (so a checkout works as well as an installed package).  The
baseline is ``python -m gamesession.bench.echo``.  Both are pinned to one
core and the load generator to another when the OS allows it.
"""

import os
import resource
import signal
import socket
import subprocess
import sys
import time

from nacl.public import PrivateKey

from gamesession.keys import write_private_key

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLUGIN = (
    "from twisted.application.service import ServiceMaker\n"
    "gamesession = ServiceMaker('gamesession', 'gamesession.server.tap', "
    "'Multiplayer session server', 'gamesession')\n"
)


# Every client of a benchmark comes from 127.0.0.1 and one session carries
# 100k datagrams/s: the server's per-address and per-session limits would
# refuse the load.  The rate limit stays on (each datagram still pays for its
# token bucket) with a rate no benchmark reaches; the pending-login caps are
# raised above any --concurrency, the hello rates and sessions per address off.
BENCH_OPTIONS = (
    "--max-datagram-rate", "1000000000",
    "--max-message-rate", "1000000000",
    "--max-message-bytes", "1000000000000",
    "--max-pending", "100000",
    "--max-pending-per-address", "100000",
    "--max-pending-per-subnet", "100000",
    "--max-sessions-per-address", "0",
    "--hello-rate", "0",
    "--hello-rate-per-subnet", "0",
)


def cpu_plan():
    """(server cpu, load generator cpu, note): two distinct cores, or None when pinning is unavailable."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None, "no sched_setaffinity: processes not pinned"
    if len(cpus) < 2:
        return None, None, "one core: server and load generator share it"
    return cpus[0], cpus[1], "server on cpu {}, load generator on cpu {}".format(cpus[0], cpus[1])


def pin(cpu):
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def raise_nofile(wanted: int):
    """Raise the soft fd limit towards ``wanted`` (at most the hard limit); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(wanted, soft) if hard == resource.RLIM_INFINITY else hard
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port(kind=socket.SOCK_STREAM, family=socket.AF_INET, host="127.0.0.1") -> int:
    """A port nothing listens on at ``host`` right now."""
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_tcp(port: int, process=None, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Wait until host:port accepts; RuntimeError if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError("server exited with status {}".format(process.returncode))
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on port {} within {:g} s".format(port, timeout))


def stop_process(process, sig=signal.SIGTERM, timeout: float = 5.0):
    """Signal a child, kill it if it outlives ``timeout``; its exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes (0 when unreadable)."""
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket bound to local ``port``
    (its receive buffer was full), from /proc/net/udp; 0 when unreadable."""
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        total += int(fields[-1])
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return total


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0.0 when unreadable)."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


class ServerProcess:
    def __init__(self, name, process, udp_port, login_port=None, public_key=None, log_path=None):
        self.name = name
        self.process = process
        self.udp_port = udp_port
        self.login_port = login_port
        self.public_key = public_key
        self.log_path = log_path

    @property
    def pid(self):
        return self.process.pid

    def rss(self):
        return rss_bytes(self.pid)

    def stop(self, timeout=5.0):
        return stop_process(self.process, signal.SIGTERM, timeout)


def _preexec(cpu, nofile):
    def setup():
        pin(cpu)
        if nofile:
            raise_nofile(nofile)
    return setup


def _env(plugin_dir=None):
    env = dict(os.environ)
    paths = [p for p in (plugin_dir, PACKAGE_PARENT, env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def start_gamesession(workdir: str, cpu=None, options=(), nofile=0,
                      twistd_options=()) -> ServerProcess:
    """The real server: ``twistd -n gamesession`` on 127.0.0.1 free ports."""
    plugins = os.path.join(workdir, "plugins", "twisted", "plugins")
    os.makedirs(plugins, exist_ok=True)
    with open(os.path.join(plugins, "gamesession_plugin.py"), "w") as f:
        f.write(PLUGIN)
    key = PrivateKey.generate()
    key_file = os.path.join(workdir, "server.key")
    if os.path.exists(key_file):
        os.unlink(key_file)
    write_private_key(key_file, key)
    login_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    log_path = os.path.join(workdir, "twistd.log")
    argv = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "--logfile=" + log_path] + list(twistd_options) + ["gamesession",
        "--login", "tcp:{}:interface=127.0.0.1".format(login_port),
        "--udp", str(udp_port), "--interface", "127.0.0.1", "--key-file", key_file,
    ] + list(options)
    process = subprocess.Popen(
        argv, env=_env(os.path.join(workdir, "plugins")), cwd=workdir,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_preexec(cpu, nofile))
    server = ServerProcess("gamesession", process, udp_port, login_port,
                           bytes(key.public_key), log_path)
    try:
        wait_for_tcp(login_port, process)
    except RuntimeError as e:
        server.stop()
        raise RuntimeError("twistd gamesession did not start: {}: {}".format(
            e, process.stderr.read().decode(errors="replace")[-2000:]))
    return server


def start_echo(cpu=None, module="gamesession.bench.echo", rcvbuf=None) -> ServerProcess:
    """The baseline plain Twisted UDP echo (or another baseline ``module`` of the
    same shape: ``python -m MODULE 0 [RCVBUF]`` prints ``ready PORT``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "0"] + ([str(rcvbuf)] if rcvbuf else []), env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_preexec(cpu, 0))
    line = process.stdout.readline().split()
    if len(line) != 2 or line[0] != "ready":
        process.kill()
        raise RuntimeError("baseline {} did not start: {}".format(
            module, process.stderr.read()[-2000:]))
    return ServerProcess("baseline", process, int(line[1]))


def machine_info() -> dict:
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import nacl
        import twisted
        info["twisted"] = twisted.__version__
        info["pynacl"] = nacl.__version__
    except Exception:
        pass
    info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return info
