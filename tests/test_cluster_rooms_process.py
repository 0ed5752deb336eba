"""Rooms across real ``twistd gamesession --cluster`` nodes on loopback and a real redis-server.

The rules are unit-tested on the in-memory directory (test_cluster_rooms.py);
these show them across processes: two ``gamesession room`` clients logged in
on different nodes end up in one room and see each other's lines (the
issue's Done-when), list and join_or_create see every node's rooms, a
redirect's ticket works once and a reused, expired or forged one is refused
(419), and a node killed with -9 takes its rooms out of the listings.
"""

import re

import pytest
import pytest_twisted
from twisted.internet.endpoints import HostnameEndpoint

from conftest import need_module
from test_cluster import USERS, login, nodes, reactor, sleep, until  # noqa: F401 (fixture)
from test_room_cli import say
from gamesession.client import GameClient
from gamesession.keys import decode_key
from gamesession.protocol import transfer
from gamesession.protocol.clientcore import ClientCore, LoginFailed

need_module("txredisapi")
pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]


def room_args(server, user):
    return ["room", "--server", "127.0.0.1:{}".format(server.login_port),
            "--server-key", server.public_key, "--user", user, "--password", "pw"]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_two_room_clients_on_different_nodes_end_up_in_one_room(nodes, interactive, transport):
    a = nodes("node-a")
    b = nodes("node-b")
    udp = ["--udp"] if transport == "udp" else []
    alice = interactive.cli(*room_args(a, "alice"), "--room", "chat", *udp)
    line = alice.expect("joined ")
    room = line.split()[1]
    assert line == "joined {} as alice (members: alice)".format(room)
    bob = interactive.cli(*room_args(b, "bob"), "--room", "chat", *udp)
    moved = bob.expect("moved to ")
    assert moved == "moved to 127.0.0.1:{} (room {} is on that node)".format(a.login_port, room)
    assert bob.expect("joined ") == "joined {} as bob (members: alice, bob)".format(room)
    assert alice.expect("bob") == "+ bob joined"
    assert say(alice, bob, "hello from alice over " + transport, bool(udp)) == (
        "<alice> hello from alice over " + transport)
    assert say(bob, alice, "hi alice", bool(udp)) == "<bob> hi alice"
    status, err = bob.finish()
    assert (status, err) == (0, ""), err
    assert alice.expect("bob left") == "- bob left (left)"
    status, err = alice.finish()
    assert (status, err) == (0, ""), err
    for server in (a, b):
        assert "Traceback" not in server.log()
    assert "sent to node node-a" in b.log()


def ticket_client(server, ticket):
    """A GameClient whose login is ``ticket_login {ticket}`` (not yet connected)."""
    core = ClientCore(decode_key(server.public_key), "?", None,
                      ticket_login=transfer.ticket_login(ticket))
    return GameClient(reactor(), core)


async def ticket_login(server, ticket):
    client = ticket_client(server, ticket)
    await client._login(HostnameEndpoint(reactor(), "127.0.0.1", server.login_port, timeout=5),
                        None, None, 5.0)
    return client


@pytest_twisted.ensureDeferred
async def test_list_join_or_create_and_redirect_tickets_across_nodes(nodes):
    a = nodes("node-a")
    b = nodes("node-b")
    alice = await login(a, "alice")
    here = await alice.create_room("duel", label={"map": "q2dm1"}, max_members=3)
    bob = await login(b, "bob")
    [info] = await bob.list_rooms("duel")
    assert (info.room.hex(), info.label, info.members, info.max_members) == (
        here.id, {"map": "q2dm1"}, 1, 3)
    moves = []
    bob.on_moved = moves.append
    joined = await bob.join_or_create("duel")
    assert joined.id == here.id and sorted(joined.members.values()) == ["alice", "bob"]
    [redirect] = moves
    assert (redirect.host, redirect.port, redirect.udp_port) == ("127.0.0.1", a.login_port,
                                                                 a.udp_port)
    assert bob.server_udp[1] == a.udp_port
    assert await bob.ping() >= 0  # the UDP channel now runs to node-a
    presence = []
    here.on_presence = presence.append
    assert await until(lambda: presence, 5)
    # the ticket worked once: used again, refused
    with pytest.raises(LoginFailed) as reused:
        await ticket_login(a, redirect.ticket)
    assert reused.value.code == 419
    with pytest.raises(LoginFailed) as forged:
        await ticket_login(a, "F" * 22)
    assert forged.value.code == 419
    await bob.logout()
    await alice.logout()
    for server in (a, b):
        assert "Traceback" not in server.log()


@pytest_twisted.ensureDeferred
async def test_an_expired_ticket_is_refused(nodes, redis_server):
    a = nodes("node-a")
    b = nodes("node-b", "--ticket-ttl", "0.5")
    alice = await login(a, "alice")
    room = await alice.create_room("duel")
    bob = await login(b, "bob")
    # Ask node-b for a seat in alice's room but do not follow the redirect.
    got = []
    bob._follow = got.append
    rid, frame = bob.core.join_room(room.id)
    bob.control.sendFrame(frame)
    assert await until(lambda: got, 5)
    [redirect] = got
    assert redirect.expires <= 0.5
    await sleep(0.8)
    with pytest.raises(LoginFailed) as expired:
        await ticket_login(a, redirect.ticket)
    assert expired.value.code == 419
    assert bob.end_reason is None  # still on node-b
    await bob.logout()
    await alice.logout()


@pytest_twisted.ensureDeferred
async def test_a_killed_nodes_rooms_leave_the_listings(nodes):
    a = nodes("node-a", "--node-ttl", "1")
    b = nodes("node-b", "--node-ttl", "1")
    alice = await login(a, "alice")
    room = await alice.create_room("duel")
    bob = await login(b, "bob")
    assert [i.room.hex() for i in await bob.list_rooms("duel")] == [room.id]
    a.stop(sig=9)
    killed = reactor().seconds()

    async def listed():
        return [i.room.hex() for i in await bob.list_rooms("duel")]
    while await listed():
        assert reactor().seconds() - killed < 5, "the dead node's room is still listed"
        await sleep(0.2)
    print("room unlisted {:.1f} s after kill -9".format(reactor().seconds() - killed))
    with pytest.raises(Exception) as refused:
        await bob.join_room(room.id)
    assert getattr(refused.value, "code", None) == 460
    await bob.logout()
    alice._end("test over")  # its node is dead: end it here (timers included)
