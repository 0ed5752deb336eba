"""The nftables gate: ruleset text, error messages, and the real thing in a
pair of network namespaces made (and removed) by the test."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import need
from gamesession.knock import firewall

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ruleset_drops_only_syns_to_the_login_port():
    text = firewall.ruleset("gamesession", 7000)
    assert text.startswith("add table inet gamesession\ndelete table inet gamesession\n")
    assert "tcp dport 7000 tcp flags & (syn | ack) == syn ip saddr @granted_v4 accept" in text
    assert "tcp dport 7000 tcp flags & (syn | ack) == syn counter drop" in text
    assert "flags timeout" in text


def test_grant_commands_refresh_the_timeout():
    assert firewall.grant_commands("t", "::ffff:10.1.2.3", 30) == (
        "add element inet t granted_v4 { 10.1.2.3 }\n"
        "delete element inet t granted_v4 { 10.1.2.3 }\n"
        "add element inet t granted_v4 { 10.1.2.3 timeout 30s }\n"
    )
    assert "granted_v6 { 2001:db8::1 timeout 1s }" in firewall.grant_commands("t", "2001:db8::1", 0.2)


def test_missing_nft_is_a_clear_error():
    fw = firewall.NftFirewall(7000, nft="gamesession-no-such-nft")
    with pytest.raises(firewall.FirewallError, match="not found; install nftables"):
        fw.check()


def test_not_permitted_is_a_clear_error():
    def run(argv, **kw):
        return subprocess.CompletedProcess(
            argv, 1, "", "Error: Could not process rule: Operation not permitted\n"
        )

    fw = firewall.NftFirewall(7000, nft=sys.executable, run=run)
    with pytest.raises(firewall.FirewallError, match="needs root or CAP_NET_ADMIN"):
        fw.check()
    with pytest.raises(firewall.FirewallError, match="needs root or CAP_NET_ADMIN"):
        fw.startService()
    assert not fw.running


# -- the real gate, in namespaces -------------------------------------------

CLIENT = textwrap.dedent(
    """
    import socket, sys
    mode, source, server = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "knock":
        for port in sys.argv[4].split(","):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((source, 0))
                s.sendto(b"\\0", (server, int(port)))
            import time; time.sleep(0.02)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(float(sys.argv[5]))
        try:
            s.connect((server, int(sys.argv[4])))
        except socket.timeout:
            print("timeout")
        except ConnectionRefusedError:
            print("refused")
        else:
            s.settimeout(3)
            print(s.recv(100).decode() or "closed")
    """
)


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def netns_pair():
    need(os.geteuid() == 0, "needs root to create network namespaces and nft rules")
    need(shutil.which("ip") and shutil.which("nft"), "needs iproute2 and nftables")
    tag = f"gsk{os.getpid() % 100000}"
    srv, cli = f"{tag}s", f"{tag}c"
    net = f"10.199.{os.getpid() % 250}"
    try:
        sh("ip", "netns", "add", srv)
        sh("ip", "netns", "add", cli)
        sh("ip", "link", "add", f"{tag}a", "netns", srv, "type", "veth", "peer", f"{tag}b", "netns", cli)
        sh("ip", "-n", srv, "addr", "add", f"{net}.1/24", "dev", f"{tag}a")
        sh("ip", "-n", cli, "addr", "add", f"{net}.2/24", "dev", f"{tag}b")
        sh("ip", "-n", cli, "addr", "add", f"{net}.3/24", "dev", f"{tag}b")
        for ns, dev in ((srv, f"{tag}a"), (cli, f"{tag}b")):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")
    except subprocess.CalledProcessError as e:
        for ns in (srv, cli):
            sh("ip", "netns", "del", ns, check=False)
        need(False, f"cannot create network namespaces here: {e.stderr.strip()}")
    try:
        yield srv, cli, net
    finally:
        for ns in (srv, cli):
            sh("ip", "netns", "del", ns, check=False)


@pytest.mark.network
@pytest.mark.timeout(90)
def test_nft_gate_in_namespace(netns_pair):
    srv, cli, net = netns_pair
    server, granted, other = f"{net}.1", f"{net}.2", f"{net}.3"
    login, ports = 7000, "7102,7101,7103"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", srv, sys.executable, str(ROOT / "tests" / "knock_netns_server.py"), str(login), ports],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )

    def client(*args):
        out = sh("ip", "netns", "exec", cli, sys.executable, "-c", CLIENT, *args)
        return out.stdout.strip()

    try:
        assert proc.stdout.readline().strip().endswith("READY")
        table = sh("ip", "netns", "exec", srv, "nft", "list", "table", "inet", "gamesession").stdout
        assert f"tcp dport {login}" in table

        # No SYN-ACK before knocking: the connect times out, it is not refused.
        assert client("connect", granted, server, str(login), "1.5") == "timeout"
        client("knock", granted, server, ports)
        assert client("connect", granted, server, str(login), "5") == "hello"
        # Still invisible to everyone else.
        assert client("connect", other, server, str(login), "1.5") == "timeout"

        elements = sh("ip", "netns", "exec", srv, "nft", "list", "set", "inet", "gamesession", "granted_v4").stdout
        assert granted in elements and other not in elements
        table = sh("ip", "netns", "exec", srv, "nft", "list", "table", "inet", "gamesession").stdout
        assert "counter packets 0 " not in table  # the timeouts were the kernel's drops
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert proc.returncode == 0, log
    # The table is removed at stop.
    assert "gamesession" not in sh("ip", "netns", "exec", srv, "nft", "list", "tables").stdout
