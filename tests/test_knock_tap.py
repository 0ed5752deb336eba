"""Knock options of ``twistd gamesession`` and how makeService wires them."""

import random

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from gamesession.knock import options as knocktap
from gamesession.knock.rule import KnockGate, write_secret_file
from gamesession.knock.listeners import KnockService
from gamesession.server.tap import Options, makeService


def options(*argv):
    config = Options()
    config.parseOptions(list(argv))
    return config


def test_no_knock_options_no_gate(tmp_path):
    config = options("--key-file", str(tmp_path / "k"))
    assert config["knock-sequence"] is None
    top = makeService(config, MemoryReactorClock())
    assert top.login_factory.gate is None
    assert not any(isinstance(s, KnockService) for s in top)


def test_knock_wires_the_gate_into_login(tmp_path):
    config = options("--key-file", str(tmp_path / "k"), "--knock", "7102,7101,7103",
                     "--knock-window", "5", "--knock-grant", "60", "--interface", "127.0.0.1")
    top = makeService(config, MemoryReactorClock())
    knocking = [s for s in top if isinstance(s, KnockService)]
    assert len(knocking) == 1
    children = list(top)
    login = next(s for s in children if isinstance(s, StreamServerEndpointService))
    assert children.index(knocking[0]) < children.index(login)  # gate up before the port
    gate = top.login_factory.gate
    assert isinstance(gate, KnockGate) and gate is knocking[0].gate
    assert gate.knocker.sequence == (7102, 7101, 7103)
    assert gate.knocker.progress.window == 5 and gate.knocker.grant_seconds == 60
    assert gate.knocker.secret is None and gate.knocker.reply_port is None


def test_knock_random_writes_the_file(tmp_path):
    path = tmp_path / "seq"
    config = Options()
    config.parseOptions(["--key-file", str(tmp_path / "k"), "--knock-random", "12",
                         "--knock-file", str(path), "--knock-reply", "--login", "tcp:7300"])
    top = makeService(config, MemoryReactorClock())
    gate = top.login_factory.gate
    assert len(gate.knocker.sequence) == 12
    assert path.read_text() == ",".join(map(str, gate.knocker.sequence)) + "\n"
    assert gate.knocker.reply_port == 7300
    # and the file alone reads it back
    again = options("--key-file", str(tmp_path / "k"), "--knock-file", str(path))
    assert again["knock-sequence"] == gate.knocker.sequence


def test_check_options_random_is_injectable():
    config = {"knock": None, "knock-random": 10, "knock-file": "x", "knock-secret": None,
              "knock-firewall": None, "knock-reply": False, "login": "tcp:7000"}
    knocktap.check_options(config, rng=random.Random(3))
    first = config["knock-sequence"]
    knocktap.check_options(config, rng=random.Random(3))
    assert config["knock-sequence"] == first


def test_secret_is_loaded(tmp_path):
    secret = write_secret_file(str(tmp_path / "s"))
    config = options("--key-file", str(tmp_path / "k"), "--knock", "7102,7101",
                     "--knock-secret", str(tmp_path / "s"), "--knock-skew", "5")
    assert config["knock-secret-key"] == secret and config["knock-skew"] == 5


@pytest.mark.parametrize("argv, message", [
    (["--knock-secret", "s"], "--knock-secret needs --knock"),
    (["--knock-reply"], "--knock-reply needs --knock"),
    (["--knock-firewall", "nft"], "--knock-firewall needs --knock"),
    (["--knock", "1,2", "--knock-random", "10"], "not both"),
    (["--knock-random", "10"], "needs --knock-file"),
    (["--knock-random", "101", "--knock-file", "f"], "10 to 100"),
    (["--knock", "1,2", "--knock-file", "f"], "use --knock @FILE"),
    (["--knock", "1,x"], "not a number"),
    (["--knock", "@/nonexistent/seq"], "cannot read knock file"),
    (["--knock-file", "/nonexistent/seq"], "cannot read knock file"),
    (["--knock", "1,2", "--knock-secret", "/nonexistent/s"], "cannot read knock secret"),
    (["--knock", "1,2", "--knock-firewall", "iptables"], "takes one value: nft"),
    (["--knock", "1,2", "--knock-firewall", "nft", "--login", "unix:/tmp/s"], "plain tcp:PORT"),
    (["--knock", "1,2", "--knock-reply", "--login", "unix:/tmp/s"], "tcp:PORT"),
    (["--knock", "1,2", "--knock-window", "0"], "positive number of seconds"),
])
def test_bad_options(argv, message):
    with pytest.raises(usage.UsageError, match=message):
        options(*argv)


@pytest.mark.parametrize("endpoint, port", [
    ("tcp:7000", 7000),
    ("tcp:7000:interface=127.0.0.1", 7000),
    ("tcp:port=7001:interface=::", 7001),
    ("ssl:7443:privateKey=k.pem", 7443),
    ("unix:/tmp/sock", None),
    ("tcp:interface=::", None),
])
def test_login_port(endpoint, port):
    assert knocktap.login_port(endpoint) == port
