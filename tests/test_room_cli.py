"""``gamesession room`` as users run it: real processes against a real twistd.

Few and bounded: two players in a room over TCP and over UDP, with a third
in another room of the same type that must see none of it, and the one-line
errors.
"""

import re

import pytest

from conftest import run_cli

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]

USERS = "memory:alice:pw:bob:pw:carol:pw"


def login_args(server, user):
    return ["room", "--server", "127.0.0.1:{}".format(server.login_port),
            "--server-key", server.public_key, "--user", user, "--password", "pw"]


def say(speaker, listener, text, udp):
    """The line the listener printed for ``text``; over UDP, said again (up to
    5 times) until heard, since a datagram may be lost."""
    for _ in range(5 if udp else 1):
        speaker.send(text)
        line = listener.expect(text, timeout=2.0, fail=False) if udp else listener.expect(text)
        if line is not None:
            return line
    return listener.expect(text)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_two_players_see_each_other_and_a_third_room_sees_nothing(start_server, interactive,
                                                                  transport):
    server = start_server("--auth", USERS)
    udp = ["--udp"] if transport == "udp" else []
    alice = interactive.cli(*login_args(server, "alice"), "--room", "chat", *udp)
    line = alice.expect("joined ")
    assert re.fullmatch(r"joined [0-9a-f]{16} as alice \(members: alice\)", line), line
    room = line.split()[1]
    # Another room of the same type: --create never joins an existing one.
    carol = interactive.cli(*login_args(server, "carol"), "--create", "chat", *udp)
    carol_room = carol.expect("joined ").split()[1]
    assert carol_room != room

    bob = interactive.cli(*login_args(server, "bob"), "--join", room, *udp)
    assert bob.expect("joined ") == "joined {} as bob (members: alice, bob)".format(room)
    assert alice.expect("bob") == "+ bob joined"

    udp = bool(udp)
    assert say(alice, bob, "hello from alice over " + transport, udp) == (
        "<alice> hello from alice over " + transport)
    assert say(bob, alice, "hi alice", udp) == "<bob> hi alice"

    status, err = bob.finish()
    assert (status, err) == (0, ""), err
    assert alice.expect("bob left") == "- bob left (left)"
    for _ in range(3):
        carol.send("anyone here?")
    status, err = alice.finish()
    assert (status, err) == (0, "")
    assert "anyone here" not in " ".join(alice.seen)

    status, err = carol.finish()
    assert (status, err) == (0, "")
    assert carol.seen + carol.rest() == ["joined {} as carol (members: carol)".format(carol_room)]
    log = server.log()
    assert "Traceback" not in log


def test_refusals_and_login_failures_are_one_line_and_exit_1(start_server, plugin_path):
    server = start_server("--auth", USERS)
    result = run_cli(plugin_path, *login_args(server, "alice"), "--join", "0123456789abcdef",
                     input="")
    assert result.returncode == 1
    assert result.stderr == "gamesession room: refused: no such room (460)\n"
    args = login_args(server, "alice")
    args[args.index("pw")] = "wrong"
    result = run_cli(plugin_path, *args, input="")
    assert result.returncode == 1
    assert result.stderr == "gamesession room: auth failed: wrong user name or password\n"
    result = run_cli(plugin_path, *login_args(server, "alice"), "--create", "no spaces", input="")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "--create: a room type is 1-32 characters" in result.stderr


def test_end_of_input_right_after_joining_leaves_and_logs_out(start_server, plugin_path):
    server = start_server("--auth", USERS)
    result = run_cli(plugin_path, *login_args(server, "alice"), "--room", "quiet", input="")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"joined [0-9a-f]{16} as alice \(members: alice\)\n", result.stdout)
    assert "reason=logout" in server.log()


def test_a_line_over_the_limit_is_refused_and_the_session_lives_on(start_server, plugin_path):
    server = start_server("--auth", USERS)
    result = run_cli(plugin_path, *login_args(server, "alice"), "--room", "big",
                     input="x" * 5000 + "\nsmall\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("gamesession room: line not sent: room message of 5000 bytes is over"
                             " the 4096-byte limit (MAX_ROOM_MESSAGE)\n")
    assert "reason=logout" in server.log()  # not ended by the server for a bad frame


def test_the_server_stopping_ends_the_command_with_one_line(start_server, interactive):
    server = start_server("--auth", USERS)
    alice = interactive.cli(*login_args(server, "alice"), "--room", "chat")
    alice.expect("joined ")
    server.stop(sig=15)
    alice.process.wait(10)
    status, err = alice.finish()
    assert (status, err) == (1, "gamesession room: session ended (shutdown)\n")
