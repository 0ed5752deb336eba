"""UDP sessions across real address translation, in network namespaces.

See tests/netns.py for the topology: a client behind a masquerading home NAT
with random source ports, a Docker-like host that DNATs published ports to
different container ports, the server in its own namespace, and an attacker
host on the WAN.  Needs root, iproute2, nftables and conntrack: skipped with a
reason otherwise, and failed instead when CI is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

try:
    from tests import netns
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import netns

pytestmark = pytest.mark.network


@pytest.fixture
def topology():
    reason = netns.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the NAT test cannot run: " + reason)
        pytest.skip(reason)
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
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the NAT test cannot run: " + reason)
        pytest.skip(reason)
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
