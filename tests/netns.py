"""A home NAT and a Docker host, rebuilt from network namespaces.

No Docker engine runs on the test machines, so the tests reproduce what
Docker and a home router do to a client's packets with namespaces, veth pairs
and nftables:

    client 10.201.1.2
      |  (LAN 10.201.1.0/24)
    home 10.201.1.1 / 10.202.0.2     masquerade fully-random (new source
      |                               port for every new UDP mapping)
      |  (WAN 10.202.0.0/24, a bridge in the docker host)
    dockerhost 10.202.0.1 / 10.203.0.1   DNAT 17000/tcp -> server:7000,
      |     \\                             17001/udp -> server:7001
      |      attacker 10.202.0.66         (a third host on the WAN)
      |  (container net 10.203.0.0/24)
    server 10.203.0.2

The addresses exist only inside these namespaces.  Namespace names carry the
pid and a random part so that parallel runs cannot collide, and
:meth:`Topology.down` removes everything, including processes started in it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from typing import Optional, Sequence

CLIENT_ADDR = "10.201.1.2"
HOME_LAN_ADDR = "10.201.1.1"
HOME_WAN_ADDR = "10.202.0.2"
DOCKERHOST_WAN_ADDR = "10.202.0.1"
ATTACKER_ADDR = "10.202.0.66"
DOCKERHOST_INNER_ADDR = "10.203.0.1"
SERVER_ADDR = "10.203.0.2"

# Like ``docker run -p 17000:7000 -p 17001:7001/udp``.
PUBLISHED_TCP_PORT = 17000
PUBLISHED_UDP_PORT = 17001
SERVER_TCP_PORT = 7000
SERVER_UDP_PORT = 7001

ROLES = ("client", "home", "dockerhost", "server", "attacker")

TOOLS = ("ip", "nft", "conntrack")


class CommandFailed(Exception):
    """A command inside the topology failed; carries its output."""


def unavailable_reason() -> Optional[str]:
    """Why namespaces with NAT cannot be built here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return "missing tools: {} (apt-get install iproute2 nftables conntrack)".format(
            ", ".join(missing)
        )
    probe = "gsprobe{}{}".format(os.getpid(), secrets.token_hex(2))
    try:
        added = subprocess.run(
            ["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10
        )
        if added.returncode != 0:
            return "cannot create a network namespace: " + added.stderr.strip()
        nat = subprocess.run(
            ["ip", "netns", "exec", probe, "nft", "-f", "-"],
            input=HOME_RULESET,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if nat.returncode != 0:
            return "nftables NAT unavailable in a namespace: " + nat.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return "cannot probe network namespaces: {}".format(e)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


class Topology:
    """The namespaces above; use as a context manager or call up()/down()."""

    def __init__(self, tag: Optional[str] = None) -> None:
        tag = tag or "{}{}".format(os.getpid(), secrets.token_hex(2))
        self.ns = {role: "gs{}-{}".format(role, tag) for role in ROLES}
        self._created: list[str] = []
        self._procs: list[subprocess.Popen] = []

    # -- running things --------------------------------------------------

    def run(
        self,
        role: str,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 15,
        input: Optional[str] = None,
        env: Optional[dict] = None,
    ) -> subprocess.CompletedProcess:
        """Run a command inside one namespace and wait (bounded) for it."""
        cmd = ["ip", "netns", "exec", self.ns[role], *args]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, input=input, env=env
        )
        if check and done.returncode != 0:
            raise CommandFailed(
                "{} -> {}\nstdout: {}\nstderr: {}".format(
                    " ".join(cmd), done.returncode, done.stdout, done.stderr
                )
            )
        return done

    def popen(self, role: str, args: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a long-running process inside a namespace; down() ends it."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *args], **kwargs)
        self._procs.append(proc)
        return proc

    def nft(self, role: str, ruleset: str) -> None:
        self.run(role, ["nft", "-f", "-"], input=ruleset)

    def sysctl(self, role: str, key: str, value: str) -> None:
        """Set a per-namespace sysctl (through /proc: no procps needed)."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run(role, ["sh", "-c", 'echo "$1" > "$2"', "sysctl", value, path])

    def _ip(self, *args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
        if done.returncode != 0:
            raise CommandFailed("ip {} -> {}".format(" ".join(args), done.stderr.strip()))

    # -- conntrack helpers -------------------------------------------------

    def conntrack_udp(self, role: str) -> list[dict]:
        """The namespace's UDP conntrack entries, parsed.

        Each entry is a dict with ``orig`` and ``reply`` tuples (src, sport,
        dst, dport) and, where accounting is on, packet counts.
        """
        out = self.run(role, ["conntrack", "-L", "-p", "udp"], check=False).stdout
        return [parse_conntrack_line(line) for line in out.splitlines() if "src=" in line]

    def flush_udp_conntrack(self, role: str) -> None:
        # exit code 1 with "0 flow entries" when there was nothing to delete
        self.run(role, ["conntrack", "-D", "-p", "udp"], check=False)

    # -- building and tearing down -------------------------------------

    def up(self) -> "Topology":
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        ns = self.ns
        for role in ROLES:
            self._ip("netns", "add", ns[role])
            self._created.append(ns[role])
            self._ip("-n", ns[role], "link", "set", "lo", "up")

        # Links are created directly inside the namespaces, so interface names
        # never touch the host's (or another run's) namespace.
        self._ip("-n", ns["client"], "link", "add", "lan0", "type", "veth",
                 "peer", "name", "lan", "netns", ns["home"])
        self._ip("-n", ns["home"], "link", "add", "wan", "type", "veth",
                 "peer", "name", "home", "netns", ns["dockerhost"])
        self._ip("-n", ns["attacker"], "link", "add", "wan0", "type", "veth",
                 "peer", "name", "attacker", "netns", ns["dockerhost"])
        self._ip("-n", ns["dockerhost"], "link", "add", "inner", "type", "veth",
                 "peer", "name", "eth0", "netns", ns["server"])
        self._ip("-n", ns["dockerhost"], "link", "add", "wan", "type", "bridge")
        for port in ("home", "attacker"):
            self._ip("-n", ns["dockerhost"], "link", "set", port, "master", "wan")

        addrs = {
            ("client", "lan0"): CLIENT_ADDR,
            ("home", "lan"): HOME_LAN_ADDR,
            ("home", "wan"): HOME_WAN_ADDR,
            ("dockerhost", "wan"): DOCKERHOST_WAN_ADDR,
            ("attacker", "wan0"): ATTACKER_ADDR,
            ("dockerhost", "inner"): DOCKERHOST_INNER_ADDR,
            ("server", "eth0"): SERVER_ADDR,
        }
        for (role, dev), addr in addrs.items():
            self._ip("-n", ns[role], "addr", "add", addr + "/24", "dev", dev)
        for role, dev in [*addrs, ("dockerhost", "home"), ("dockerhost", "attacker")]:
            self._ip("-n", ns[role], "link", "set", dev, "up")

        for role, gateway in [
            ("client", HOME_LAN_ADDR),
            ("home", DOCKERHOST_WAN_ADDR),
            ("attacker", DOCKERHOST_WAN_ADDR),
            ("server", DOCKERHOST_INNER_ADDR),
        ]:
            self._ip("-n", ns[role], "route", "add", "default", "via", gateway)

        # The rules first: they load conntrack, whose sysctls follow.
        self.nft("home", HOME_RULESET)
        self.nft("dockerhost", DOCKERHOST_RULESET)
        self.nft("server", SERVER_RULESET)
        # Forwarding only inside the two routers, never on the machine itself.
        for role in ("home", "dockerhost"):
            self.sysctl(role, "net.ipv4.ip_forward", "1")
        # Per-flow packet counts: how many datagrams went back to each peer.
        for role in ("home", "dockerhost", "server"):
            self.sysctl(role, "net.netfilter.nf_conntrack_acct", "1")

    def down(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        for name in reversed(self._created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=15)
        self._created.clear()

    def __enter__(self) -> "Topology":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


# A home router: everything leaving on the WAN side gets the router's address
# and a random source port, new for each new mapping (like many CGNATs and
# home routers after a mapping expired).
HOME_RULESET = """
table ip homenat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade fully-random
    }
}
"""

# Docker's published ports, with the userland proxy off: DNAT keeps the
# client's source address.  The counter shows whatever the server sends back
# to the attacker host.
DOCKERHOST_RULESET = """
table ip dockernat {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" tcp dport {ptcp} dnat to {srv}:{stcp}
        iifname "wan" udp dport {pudp} dnat to {srv}:{sudp}
    }}
}}
table ip dockerfilter {{
    counter to_attacker {{ }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ip daddr {attacker} counter name "to_attacker"
    }}
}}
""".format(
    ptcp=PUBLISHED_TCP_PORT,
    stcp=SERVER_TCP_PORT,
    pudp=PUBLISHED_UDP_PORT,
    sudp=SERVER_UDP_PORT,
    srv=SERVER_ADDR,
    attacker=ATTACKER_ADDR,
)

# In the server's own namespace: where do its UDP datagrams go?  Anything not
# addressed to the home router's public address is counted separately.  (The
# ct expression also turns conntrack on in this namespace.)
SERVER_RULESET = """
table ip serverwatch {{
    counter udp_to_home {{ }}
    counter udp_elsewhere {{ }}
    chain output {{
        type filter hook output priority filter; policy accept;
        ct state new,established udp sport {sudp} ip daddr {home} counter name "udp_to_home"
        udp sport {sudp} ip daddr != {home} counter name "udp_elsewhere"
    }}
}}
""".format(sudp=SERVER_UDP_PORT, home=HOME_WAN_ADDR)


def parse_conntrack_line(line: str) -> dict:
    """Parse one ``conntrack -L`` line into its two directions.

    The first src/sport/dst/dport (and packets) belong to the original
    direction, the second to the reply direction.
    """
    fields: dict[str, list[str]] = {}
    for word in line.split():
        if "=" in word:
            key, _, value = word.partition("=")
            fields.setdefault(key, []).append(value)

    def direction(i: int) -> dict:
        def get(key: str):
            values = fields.get(key, [])
            return values[i] if len(values) > i else None

        packets = get("packets")
        return {
            "src": get("src"),
            "sport": int(get("sport")) if get("sport") else None,
            "dst": get("dst"),
            "dport": int(get("dport")) if get("dport") else None,
            "packets": int(packets) if packets is not None else None,
        }

    return {"orig": direction(0), "reply": direction(1), "line": line}


def counter_packets(topology: Topology, role: str, table: str, name: str) -> int:
    """Packets a named nftables counter has seen."""
    out = topology.run(role, ["nft", "list", "counter", "ip", table, name]).stdout
    for word_index, word in enumerate(out.split()):
        if word == "packets":
            return int(out.split()[word_index + 1])
    raise CommandFailed("no packet count in: " + out)
