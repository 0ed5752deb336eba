"""examples/arena.py: two players against a real twistd see each other join, move, chat and leave."""

import os
import sys

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]

ARENA = os.path.join(ROOT, "examples", "arena.py")


def player(interactive, server, user):
    return interactive([sys.executable, ARENA, "--plain",
                        "127.0.0.1:{}".format(server.login_port), server.public_key, user, "pw"])


def test_two_players_see_each_other(start_server, interactive):
    server = start_server("--auth", "memory:alice:pw:bob:pw")
    alice = player(interactive, server, "alice")
    line = alice.expect("joined ")
    assert line.endswith("as alice (members: alice)")
    bob = player(interactive, server, "bob")
    assert bob.expect("joined ") == line.replace("as alice (members: alice)",
                                                 "as bob (members: alice, bob)")
    assert alice.expect("bob joined") == "bob joined"
    # Each learns where the other starts: the newcomer from a message sent to it alone.
    assert bob.expect("alice at") == "alice at 0,0"
    assert alice.expect("bob at") == "bob at 3,0"
    alice.send("dds")  # moves go as room datagrams; repeated each second if lost
    assert bob.expect("alice at 2") == "alice at 2,1"
    bob.send("say hello alice")
    assert alice.expect("hello") == "<bob> hello alice"
    bob.send("quit")
    assert alice.expect("bob left") == "bob left (left)"
    assert bob.finish() == (0, "")
    assert alice.finish() == (0, "")
    assert "Traceback" not in server.log()


def test_usage_without_arguments(interactive):
    child = interactive([sys.executable, ARENA])
    status, err = child.finish()
    assert status == 2 and err.startswith("usage: arena.py")


def test_the_board_is_drawn(start_server, interactive):
    server = start_server("--auth", "memory:alice:pw")
    alice = interactive([sys.executable, ARENA, "127.0.0.1:{}".format(server.login_port),
                         server.public_key, "alice", "pw"])
    alice.expect("alice (you)")
    alice.send("dd")
    alice.send("say hi")
    alice.expect("<alice> hi")
    alice.send("quit")
    status, err = alice.finish()
    assert (status, err) == (0, "")
    board = [line for line in alice.seen if set(line) <= set(".A")]
    assert "..A........." in board  # moved two to the right on the 12-wide board
