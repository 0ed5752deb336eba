"""UDP sessions across real address translation, in network namespaces.

See tests/netns.py for the topology: a client behind a masquerading home NAT
with random source ports, a Docker-like host that DNATs published ports to
different container ports, the server in its own namespace, and an attacker
host on the WAN.  Needs root, iproute2, nftables and conntrack: skipped with a
reason otherwise, and failed instead when CI is set.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import time

import pytest

try:
    from tests import netns
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import netns
from conftest import need

pytestmark = pytest.mark.network


@pytest.fixture
def topology():
    reason = netns.unavailable_reason()
    need(reason is None, "the NAT test cannot run: {}".format(reason))
    with netns.Topology() as topo:
        yield topo


ECHO_SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    print("ready", flush=True)
    while True:
        data, (host, port) = s.recvfrom(2048)
        s.sendto(b"%s:%d" % (host.encode(), port), (host, port))
    """
)

ECHO_CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.bind(("0.0.0.0", int(sys.argv[3])))
    s.sendto(b"where am I?", (sys.argv[1], int(sys.argv[2])))
    print(s.recvfrom(2048)[0].decode())
    """
)


def _seen_from(topology: netns.Topology, local_port: int) -> str:
    done = topology.run(
        "client",
        [
            sys.executable,
            "-c",
            ECHO_CLIENT,
            netns.DOCKERHOST_WAN_ADDR,
            str(netns.PUBLISHED_UDP_PORT),
            str(local_port),
        ],
    )
    return done.stdout.strip()


@pytest.mark.timeout(60, method="signal")
def test_harness_translates_like_a_home_nat_and_docker(topology):
    """The harness itself, with a plain UDP echo instead of gamesession.

    The echo tells the client which address it saw: the home router's public
    address with a randomised port, reached through the published port 17001
    that the Docker-like host maps to 7001.  Deleting the home router's UDP
    conntrack entries gives the same client socket a new public port.
    """
    server = topology.popen(
        "server",
        [sys.executable, "-c", ECHO_SERVER, str(netns.SERVER_UDP_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout.readline().strip() == "ready"

    local_port = 40000
    first = _seen_from(topology, local_port)
    host, _, port = first.partition(":")
    assert host == netns.HOME_WAN_ADDR
    [mapping] = [
        e for e in topology.conntrack_udp("home") if e["orig"]["sport"] == local_port
    ]
    assert mapping["reply"]["dport"] == int(port)

    topology.flush_udp_conntrack("home")
    second = _seen_from(topology, local_port)
    assert second.partition(":")[0] == netns.HOME_WAN_ADDR
    # fully-random: a fresh mapping gets a fresh port (1 in ~64k it repeats)
    if second == first:
        topology.flush_udp_conntrack("home")
        second = _seen_from(topology, local_port)
    assert second != first

    assert netns.counter_packets(topology, "server", "serverwatch", "udp_elsewhere") == 0
    assert netns.counter_packets(topology, "server", "serverwatch", "udp_to_home") >= 2


@pytest.mark.timeout(60, method="signal")
def test_harness_tears_down():
    reason = netns.unavailable_reason()
    need(reason is None, "the NAT test cannot run: {}".format(reason))
    topo = netns.Topology()
    with pytest.raises(RuntimeError):
        with topo:
            topo.popen("server", ["sleep", "30"])
            raise RuntimeError("a failing test")
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
    ).stdout
    for name in topo.ns.values():
        assert name not in listed


# -- the real server and client across the NAT ---------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAT_CLIENT = os.path.join(ROOT, "tests", "nat_client.py")
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CLI = [sys.executable, "-c", "import sys; from gamesession.client.cli import main; sys.exit(main())"]

ATTACKER = textwrap.dedent(
    """
    import json, os, socket, sys, time
    token, replay = bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
    target = (sys.argv[1], int(sys.argv[2]))
    forged = [
        replay,                                                 # a captured packet, again
        token + (2**62).to_bytes(8, "little") + os.urandom(48),   # "newest" counter, no key
        token + (1000).to_bytes(8, "little") + os.urandom(48),
        token + replay[8:16] + os.urandom(len(replay) - 16),     # captured header, new body
        token,                                                  # too short
    ]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    for _ in range(3):
        for packet in forged:
            s.sendto(packet, target)
    s.settimeout(0.2)
    answers, deadline = 0, time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            s.recvfrom(4096)
            answers += 1
        except socket.timeout:
            pass
    print(json.dumps({"sent": 3 * len(forged), "answers": answers}))
    """
)


class JsonLines:
    """Reads a child's JSON lines with a deadline (a hung child fails the test)."""

    def __init__(self, proc: subprocess.Popen, stderr_path):
        self.proc = proc
        self.stderr_path = stderr_path
        self.buffer = b""

    def send(self, command: str) -> None:
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()

    def read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no answer from the client within {}s".format(timeout))
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(
                        "client exited: {}".format(self.stderr_path.read_text()[-2000:])
                    )
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def ask(self, command: str, timeout: float = 20) -> dict:
        self.send(command)
        return self.read(timeout)


def _child_env(tmp_path) -> dict:
    """The checkout and a copy of the plugin on PYTHONPATH (no install needed)."""
    plugins = tmp_path / "plugin" / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    with open(os.path.join(ROOT, "twisted_plugins", "gamesession_plugin.py")) as f:
        (plugins / "gamesession_plugin.py").write_text(f.read())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path / "plugin"), ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    return env


def _public_mapping(topology, local_port: int):
    """The home router's public port for the client's UDP socket (None: no mapping)."""
    ports = [
        e["reply"]["dport"]
        for e in topology.conntrack_udp("home")
        if e["orig"]["src"] == netns.CLIENT_ADDR
        and e["orig"]["sport"] == local_port
        and e["orig"]["dport"] == netns.PUBLISHED_UDP_PORT
    ]
    assert len(ports) <= 1, ports
    return ports[0] if ports else None


def _server_udp_peers(topology) -> dict:
    """{(source address, port): packets the server sent back} for the game port."""
    return {
        (e["orig"]["src"], e["orig"]["sport"]): e["reply"]["packets"]
        for e in topology.conntrack_udp("server")
        if e["orig"]["dport"] == netns.SERVER_UDP_PORT
    }


@pytest.mark.timeout(150, method="signal")
def test_session_survives_nat_and_rebinding_and_ignores_injection(topology, tmp_path):
    """A real login and UDP session through a home NAT and a Docker-like DNAT.

    (a) The server answers the translated address it saw (the home router's
        public address and randomised port), which the client never sent.
    (b) A NAT rebinding mid-session (the home router forgets its UDP
        mappings, so the client's public port changes) keeps the session:
        the next authenticated packet moves it and pongs keep coming.
    (c) Datagrams from a third host carrying the session's token (replayed
        or forged, no key) get no answer and do not move the session.
    """
    env = _child_env(tmp_path)
    key_file = str(tmp_path / "server.key")
    keygen = subprocess.run(
        [*CLI, "keygen", "--key-file", key_file],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert keygen.returncode == 0, keygen.stderr
    server_key = keygen.stdout.strip().splitlines()[-1]
    log_path = tmp_path / "twistd.log"

    server_stderr = open(tmp_path / "twistd.stderr", "w")
    server = topology.popen(
        "server",
        [
            *TWISTD, "-n", "--pidfile=", "--logfile=" + str(log_path), "gamesession",
            "--login", "tcp:{}".format(netns.SERVER_TCP_PORT),
            "--udp", str(netns.SERVER_UDP_PORT),
            "--public-udp-port", str(netns.PUBLISHED_UDP_PORT),
            "--key-file", key_file,
            "--auth", "memory:alice:secret",
            "--session-timeout", "30",
        ],
        env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=server_stderr,
    )
    server_stderr.close()  # the child has its own copy

    def server_log() -> str:
        return log_path.read_text() if log_path.exists() else ""

    # The login port answers the hello the way clients reach it: through the
    # published port and both NATs (the Docker HEALTHCHECK command, remotely).
    deadline = time.monotonic() + 20
    while True:
        health = topology.run(
            "client",
            [*CLI, "healthcheck", "--server", "{}:{}".format(
                netns.DOCKERHOST_WAN_ADDR, netns.PUBLISHED_TCP_PORT), "--timeout", "2"],
            check=False, timeout=30, env=env,
        )
        if health.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
            break
        time.sleep(0.2)
    assert health.returncode == 0, (health.stderr, server.poll(), server_log())

    client_stderr = open(tmp_path / "client.stderr", "w")
    client_proc = topology.popen(
        "client",
        [sys.executable, NAT_CLIENT, netns.DOCKERHOST_WAN_ADDR,
         str(netns.PUBLISHED_TCP_PORT), server_key, "alice", "secret", "--deadline", "100"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=client_stderr,
    )
    client_stderr.close()
    client = JsonLines(client_proc, tmp_path / "client.stderr")
    ready = client.read(timeout=20)
    assert ready["event"] == "ready", ready
    local_port = ready["local_port"]
    # The server advertised the published port, not the one it listens on.
    assert ready["server_udp"] == [netns.DOCKERHOST_WAN_ADDR, netns.PUBLISHED_UDP_PORT]
    assert "session started: user=alice token={}".format(ready["token"]) in server_log()
    report = ["client socket {}:{}".format(netns.CLIENT_ADDR, local_port)]

    # (a) pings, answered at the translated address
    first = client.ask("ping 5")
    assert first["received"] >= 4, first
    public_port = _public_mapping(topology, local_port)
    assert public_port is not None
    peers = _server_udp_peers(topology)
    report.append("home NAT maps it to {}:{}".format(netns.HOME_WAN_ADDR, public_port))
    report.append("server's UDP peers (address, port): packets sent back = {}".format(peers))
    assert set(peers) == {(netns.HOME_WAN_ADDR, public_port)}, peers
    assert peers[(netns.HOME_WAN_ADDR, public_port)] >= first["received"]

    # (b) NAT rebinding in the middle of the session
    old_port = public_port
    for _ in range(3):  # fully-random may, rarely, hand out the same port again
        topology.flush_udp_conntrack("home")
        second = client.ask("ping 5")
        public_port = _public_mapping(topology, local_port)
        if public_port != old_port:
            break
    assert public_port not in (None, old_port)
    assert second["received"] >= 4 and second["end_reason"] is None, second
    peers = _server_udp_peers(topology)
    report.append("after rebinding: home NAT port {}; server's peers {}".format(public_port, peers))
    assert peers.get((netns.HOME_WAN_ADDR, public_port), 0) >= second["received"], peers
    # the same session moved: no second login happened
    assert server_log().count("session started:") == 1

    # (c) injection from a third host with the session's token and no key
    captured = client.ask("packet")["hex"]
    assert captured[:16] == ready["token"]
    before = _server_udp_peers(topology).get((netns.HOME_WAN_ADDR, public_port), 0)
    attack = topology.run(
        "attacker",
        [sys.executable, "-c", ATTACKER, netns.DOCKERHOST_WAN_ADDR,
         str(netns.PUBLISHED_UDP_PORT), ready["token"], captured],
        timeout=20,
    )
    attack_result = json.loads(attack.stdout)
    report.append("attacker sent {sent} datagrams, got {answers} answers".format(**attack_result))
    assert attack_result["answers"] == 0
    third = client.ask("ping 5")
    assert third["received"] >= 4 and third["end_reason"] is None, third
    peers = _server_udp_peers(topology)
    report.append("after the injection: server's peers {}".format(peers))
    assert peers[(netns.HOME_WAN_ADDR, public_port)] >= before + third["received"]
    attacker_peers = {p: n for p, n in peers.items() if p[0] == netns.ATTACKER_ADDR}
    assert all(n == 0 for n in attacker_peers.values()), attacker_peers
    assert netns.counter_packets(topology, "dockerhost", "dockerfilter", "to_attacker") == 0
    # Never a datagram from the game port to anything but the home NAT's address.
    assert netns.counter_packets(topology, "server", "serverwatch", "udp_elsewhere") == 0

    bye = client.ask("quit")
    assert bye["event"] == "bye"
    server.send_signal(15)
    server.wait(timeout=10)
    log = server_log()
    assert "reason=logout" in log
    assert "Traceback" not in log
    report += [line for line in log.splitlines() if "session " in line]
    print("\n".join(report))
