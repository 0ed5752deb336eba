"""Acceptance: two ``gamesession room`` clients; one's TCP connection is cut (real processes).

Bob sees alice ``reconnecting`` and then ``back``, with no leave or join in
between; when alice cannot come back within the grace, bob sees her leave
with reason ``disconnected``.
"""

import pytest

from tcpproxy import CuttingProxy
from test_room_cli import USERS, login_args

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]


def via(proxy, server, user):
    args = login_args(server, user)
    args[args.index("--server") + 1] = "127.0.0.1:{}".format(proxy.port)
    return args


def test_a_cut_member_reconnects_and_is_back_without_leaving(start_server, interactive):
    server = start_server("--auth", USERS)
    proxy = CuttingProxy(server.login_port, lifetime=60)
    try:
        alice = interactive.cli(*via(proxy, server, "alice"), "--room", "chat")
        room = alice.expect("joined ").split()[1]
        bob = interactive.cli(*login_args(server, "bob"), "--join", room)
        bob.expect("joined ")
        alice.expect("bob joined")
        proxy.cut("rst")
        assert bob.expect("alice") == "~ alice reconnecting..."
        assert bob.expect("alice") == "+ alice is back"
        assert alice.expect("back") == "+ back"
        alice.send("still here")
        assert bob.expect("still here") == "<alice> still here"
        status, err = alice.finish()
        assert (status, err) == (0, ""), err
        assert bob.expect("alice") == "- alice left (left)"
    finally:
        proxy.close()
    log = server.log()
    assert log.count("login ok: user=alice") == 1 and log.count("resume ok: user=alice") == 1


def test_a_member_that_does_not_come_back_leaves_disconnected(start_server, interactive):
    server = start_server("--auth", USERS, "--resume-grace", "2")
    proxy = CuttingProxy(server.login_port, lifetime=60)
    try:
        alice = interactive.cli(*via(proxy, server, "alice"), "--room", "chat")
        room = alice.expect("joined ").split()[1]
        bob = interactive.cli(*login_args(server, "bob"), "--join", room)
        bob.expect("joined ")
        proxy.refusing = True
        proxy.cut("rst")
        assert bob.expect("alice") == "~ alice reconnecting..."
        assert bob.expect("alice", timeout=10) == "- alice left (disconnected)"
    finally:
        proxy.close()
