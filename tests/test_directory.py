"""One suite for both directories: InMemoryDirectory and RedisDirectory.

The Redis one runs against a real redis-server (the ``redis_server``
fixture); the in-memory one on a ``task.Clock``.  ``later(seconds)`` lets
time pass for either: the clock is advanced, or the reactor waits.
"""

import pytest
import pytest_twisted
from twisted.internet import defer, task

from gamesession.cluster.directory import (
    ClaimResult, DirectoryUnavailable, NodeRecord, RoomRecord, SeatUnavailable, UserRecord,
    check_node_name,
)
from gamesession.cluster.memory import InMemoryDirectory

from conftest import need_module

A = NodeRecord("node-a", "127.0.0.1", 7000, 7001)
B = NodeRecord("node-b", "127.0.0.1", 7100, 7101)


class Memory:
    kind = "memory"

    def __init__(self):
        self.clock = task.Clock()
        self.directory = InMemoryDirectory(self.clock)

    def later(self, seconds):
        self.clock.advance(seconds)
        return defer.succeed(None)

    def settle(self):
        return defer.succeed(None)


class Redis:
    kind = "redis"

    def __init__(self, server):
        from twisted.internet import reactor

        from gamesession.cluster.redisdir import RedisDirectory, parse_redis_url

        self.server = server
        self.reactor = reactor
        self.directory = RedisDirectory(parse_redis_url(server.url), reactor).connect()

    def later(self, seconds):
        return task.deferLater(self.reactor, seconds, lambda: None)

    async def settle(self):
        """Wait for both connections (commands and pub/sub) to be up."""
        for _ in range(200):
            if self.directory.connected and self.directory.events.size:
                return
            await self.later(0.02)
        raise AssertionError("no connection to redis")


@pytest.fixture(params=["memory", "redis"])
def world(request):
    if request.param == "memory":
        yield Memory()
        return
    need_module("txredisapi")
    world = Redis(request.getfixturevalue("redis_server"))
    yield world
    pytest_twisted.blockon(world.directory.close())


# TTLs short enough for real time, long enough for a loaded machine.
TTL = 0.6


async def arrived(world, events):
    """Wait (up to a second) for a pub/sub event to reach ``events``."""
    for _ in range(100):
        if events:
            return
        await world.later(0.01)


async def up(world, *nodes, ttl=30.0):
    await world.settle()
    for node in nodes:
        await world.directory.heartbeat(node, ttl)


@pytest_twisted.ensureDeferred
async def test_heartbeat_lists_live_nodes_and_they_expire(world):
    await up(world, A)
    assert await world.directory.heartbeat(B, TTL) is False
    assert await world.directory.heartbeat(B, TTL) is True
    assert await world.directory.live_nodes() == [A, B]
    await world.later(TTL + 0.3)
    assert await world.directory.live_nodes() == [A]
    assert await world.directory.heartbeat(B, TTL) is False  # it was lost: must restore


@pytest_twisted.ensureDeferred
async def test_deregister_removes_the_node_its_users_and_rooms(world):
    d = world.directory
    await up(world, A, B)
    await d.claim_user("alice", "node-a", "c1", "kick")
    await d.register_room(RoomRecord("r1", "duel", "node-a", "A's", 2))
    await d.deregister("node-a")
    assert await d.live_nodes() == [B]
    assert await d.user_node("alice") is None
    assert await d.list_rooms("duel") == []
    # the user can be claimed elsewhere with reject
    assert (await d.claim_user("alice", "node-b", "c2", "reject")).granted


@pytest_twisted.ensureDeferred
async def test_claim_kick_replaces_and_tells_the_old_holder(world):
    d = world.directory
    events, own = [], []
    await d.subscribe("node-a", events.append)
    await d.subscribe("node-b", own.append)
    await up(world, A, B)
    assert await d.claim_user("alice", "node-a", "c0", "kick") == ClaimResult(True, None)
    # a second login on the same node: that node replaces its own session
    assert await d.claim_user("alice", "node-a", "c1", "kick") == ClaimResult(
        True, UserRecord("alice", "node-a", "c0"))
    result = await d.claim_user("alice", "node-b", "c2", "kick")
    assert result == ClaimResult(True, UserRecord("alice", "node-a", "c1"))
    assert await d.user_node("alice") == UserRecord("alice", "node-b", "c2")
    await arrived(world, events)
    assert events == [{"type": "replaced", "user": "alice", "claim": "c1", "by": "node-b"}]
    assert own == []


@pytest_twisted.ensureDeferred
async def test_claim_reject_refuses_while_a_live_node_holds_the_user(world):
    d = world.directory
    await up(world, A)
    await d.heartbeat(B, TTL)
    assert (await d.claim_user("bob", "node-b", "c1", "reject")).granted
    refused = await d.claim_user("bob", "node-a", "c2", "reject")
    assert refused == ClaimResult(False, UserRecord("bob", "node-b", "c1"))
    # the same node too: one login per user, cluster-wide
    assert not (await d.claim_user("bob", "node-b", "c3", "reject")).granted
    await world.later(TTL + 0.3)  # node-b dies
    assert await d.user_node("bob") is None
    assert await d.claim_user("bob", "node-a", "c2", "reject") == ClaimResult(True, None)


@pytest_twisted.ensureDeferred
async def test_a_node_that_is_not_registered_cannot_claim(world):
    await world.settle()
    with pytest.raises(DirectoryUnavailable):
        await world.directory.claim_user("alice", "node-a", "c1", "kick")


@pytest_twisted.ensureDeferred
async def test_release_only_removes_the_same_claim(world):
    d = world.directory
    await up(world, A, B)
    await d.claim_user("alice", "node-a", "c1", "kick")
    await d.claim_user("alice", "node-a", "c2", "kick")  # a newer login on the same node
    assert not await d.release_user("alice", "node-a", "c1")
    assert await d.user_node("alice") == UserRecord("alice", "node-a", "c2")
    assert not await d.release_user("alice", "node-b", "c2")
    assert await d.release_user("alice", "node-a", "c2")
    assert await d.user_node("alice") is None


@pytest_twisted.ensureDeferred
async def test_restore_reregisters_and_reports_conflicts(world):
    d = world.directory
    await up(world, A, B)
    await d.claim_user("carol", "node-b", "b1", "kick")  # carol moved to node-b meanwhile
    await d.claim_user("stale", "node-a", "s1", "kick")  # node-a no longer holds stale
    await d.claim_user("newer", "node-a", "n2", "kick")  # a newer login than the one restored
    room = RoomRecord("r1", "duel", "node-a", "one", 4, 1)
    conflicts = await d.restore("node-a", {"alice": "a1", "carol": "c1", "newer": "n1"}, [room])
    assert conflicts == ["carol"]
    assert await d.user_node("alice") == UserRecord("alice", "node-a", "a1")
    assert await d.user_node("carol") == UserRecord("carol", "node-b", "b1")
    assert await d.user_node("stale") is None
    assert await d.user_node("newer") == UserRecord("newer", "node-a", "n2")
    assert await d.list_rooms("duel") == [room]
    await d.restore("node-a", {"alice": "a1"}, [])
    assert await d.list_rooms("duel") == []


@pytest_twisted.ensureDeferred
async def test_rooms_register_update_list_remove(world):
    d = world.directory
    await up(world, A)
    await d.heartbeat(B, TTL)
    r1 = RoomRecord("r1", "duel", "node-a", "first", 2, 0, '{"map": "x"}')
    r2 = RoomRecord("r2", "duel", "node-b", "second", 4, 1)
    r3 = RoomRecord("r3", "lobby", "node-a", "lobby", 100)
    for room in (r1, r2, r3):
        await d.register_room(room)
    assert await d.list_rooms("duel") == [r1, r2]
    assert await d.list_rooms("lobby") == [r3]
    assert await d.list_rooms("none") == []
    updated = await d.update_room("r1", occupied=1, label="first!")
    assert updated == RoomRecord("r1", "duel", "node-a", "first!", 2, 1, '{"map": "x"}')
    assert await d.update_room("nope", occupied=1) is None
    with pytest.raises(TypeError):
        d.update_room("r1", node="node-b")
    await d.register_room(RoomRecord("r3", "duel", "node-a", "retyped", 3))
    assert [r.room_id for r in await d.list_rooms("duel")] == ["r1", "r2", "r3"]
    assert await d.list_rooms("lobby") == []
    await d.remove_room("r3")
    await world.later(TTL + 0.3)  # node-b dies: its room is not listed
    assert await d.list_rooms("duel") == [updated]


@pytest_twisted.ensureDeferred
async def test_reserve_seat_counts_reservations_and_tickets_are_single_use(world):
    d = world.directory
    await up(world, A, B)
    await d.register_room(RoomRecord("r1", "duel", "node-a", "", seats=2, occupied=1))
    ticket = await d.reserve_seat("r1", "bob", 30.0)
    assert (ticket.user, ticket.room_id, ticket.node) == ("bob", "r1", "node-a")
    assert len(ticket.ticket) >= 20
    with pytest.raises(SeatUnavailable) as full:
        await d.reserve_seat("r1", "carol", 30.0)
    assert full.value.reason == "room_full"
    with pytest.raises(SeatUnavailable) as missing:
        await d.reserve_seat("nope", "carol", 30.0)
    assert missing.value.reason == "no_such_room"
    assert await d.redeem_ticket(ticket.ticket, "node-b") is None  # for another node
    used = await d.redeem_ticket(ticket.ticket, "node-a")
    assert (used.user, used.room_id, used.node) == ("bob", "r1", "node-a")
    assert 0 < used.expires_in <= 30.0
    assert await d.redeem_ticket(ticket.ticket, "node-a") is None  # single use
    assert await d.redeem_ticket("forged-" + ticket.ticket[7:], "node-a") is None


@pytest_twisted.ensureDeferred
async def test_unlisted_rooms_are_not_listed_but_can_be_reserved(world):
    d = world.directory
    await up(world, A)
    hidden = RoomRecord("r9", "duel", "node-a", "{}", seats=2, listed=False)
    shown = RoomRecord("r8", "duel", "node-a", "{}", seats=2)
    await d.register_room(hidden)
    await d.register_room(shown)
    assert await d.list_rooms("duel") == [shown]
    assert (await d.reserve_seat("r9", "bob", 30.0)).node == "node-a"
    assert (await d.update_room("r9", listed=True)).listed
    assert [r.room_id for r in await d.list_rooms("duel")] == ["r8", "r9"]
    assert not (await d.update_room("r8", listed=False)).listed
    assert await d.list_rooms("duel") == [RoomRecord("r9", "duel", "node-a", "{}", seats=2)]
    await d.restore("node-a", {}, [hidden])
    assert await d.list_rooms("duel") == []


@pytest_twisted.ensureDeferred
async def test_claim_move_is_granted_under_reject_and_says_moved(world):
    d = world.directory
    events = []
    await d.subscribe("node-a", events.append)
    await up(world, A, B)
    assert (await d.claim_user("alice", "node-a", "c1", "reject")).granted
    assert not (await d.claim_user("alice", "node-b", "c2", "reject")).granted
    moved = await d.claim_user("alice", "node-b", "c3", "move")
    assert moved == ClaimResult(True, UserRecord("alice", "node-a", "c1"))
    assert await d.user_node("alice") == UserRecord("alice", "node-b", "c3")
    await arrived(world, events)
    assert events == [{"type": "replaced", "user": "alice", "claim": "c1", "by": "node-b",
                       "reason": "moved"}]


@pytest_twisted.ensureDeferred
async def test_the_hosting_node_is_told_of_each_reservation(world):
    d = world.directory
    events = []
    await d.subscribe("node-a", events.append)
    await up(world, A, B)
    await d.register_room(RoomRecord("r1", "duel", "node-a", "", seats=4))
    ticket = await d.reserve_seat("r1", "bob", 7.5)
    await arrived(world, events)
    assert events == [{"type": "reserved", "room_id": "r1", "ticket": ticket.ticket,
                       "ttl_ms": 7500}]


@pytest_twisted.ensureDeferred
async def test_tickets_expire_and_free_their_seat(world):
    d = world.directory
    await up(world, A)
    await d.register_room(RoomRecord("r1", "duel", "node-a", "", seats=1))
    ticket = await d.reserve_seat("r1", "bob", TTL)
    with pytest.raises(SeatUnavailable):
        await d.reserve_seat("r1", "carol", TTL)
    await world.later(TTL + 0.3)
    assert await d.redeem_ticket(ticket.ticket, "node-a") is None
    assert (await d.reserve_seat("r1", "carol", TTL)).user == "carol"


@pytest_twisted.ensureDeferred
async def test_seats_of_a_dead_node_are_refused(world):
    d = world.directory
    await up(world, A)
    await d.heartbeat(B, TTL)
    await d.register_room(RoomRecord("r2", "duel", "node-b", "", seats=8))
    await world.later(TTL + 0.3)
    with pytest.raises(SeatUnavailable) as gone:
        await d.reserve_seat("r2", "bob", 5.0)
    assert gone.value.reason in ("node_gone", "no_such_room")


@pytest_twisted.ensureDeferred
async def test_dead_nodes_are_swept_by_a_live_heartbeat(world):
    d = world.directory
    await up(world, A)
    await d.heartbeat(B, TTL)
    await d.claim_user("bob", "node-b", "b1", "kick")
    await world.later(TTL + 0.3)
    await d.heartbeat(A, 30.0)
    if world.kind == "redis":
        assert world.server.command("EXISTS", "gamesession:user:bob") == b":0\r\n"
        assert world.server.command("ZCARD", "gamesession:nodes") == b":1\r\n"
    else:
        assert "bob" not in d.users and "node-b" not in d.nodes


def test_node_names_are_checked():
    assert check_node_name("host-1:7000") == "host-1:7000"
    for bad in ("", "-x", "a b", "x" * 65, "é"):
        with pytest.raises(ValueError):
            check_node_name(bad)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_redis_outage_fails_fast_then_reconnects_and_resubscribes(redis_server):
    """Redis only: a stopped server gives DirectoryUnavailable at once; after a restart
    both connections come back by themselves and events flow again."""
    need_module("txredisapi")
    world = Redis(redis_server)
    d = world.directory
    events = []
    try:
        await d.subscribe("node-a", events.append)
        await up(world, A, B)
        for _ in range(100):
            if d.events_epoch:
                break
            await world.later(0.02)
        assert d.events_epoch == 1
        redis_server.stop()
        for _ in range(100):
            if not d.connected:
                break
            await world.later(0.02)
        started = world.reactor.seconds()
        with pytest.raises(DirectoryUnavailable):
            await d.claim_user("alice", "node-b", "c1", "kick")
        assert world.reactor.seconds() - started < 0.5
        redis_server.start()
        await world.settle()
        await up(world, A, B)  # the restart lost everything: register again
        await d.claim_user("alice", "node-a", "c1", "kick")
        await d.claim_user("alice", "node-b", "c2", "kick")
        for _ in range(200):
            if events:
                break
            await world.later(0.02)
        assert [e["claim"] for e in events] == ["c1"]
        assert d.events_epoch == 2  # a node restores when this moves: events may have been lost
    finally:
        await d.close()


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks TLS only and requires a password."""
    from conftest import need
    from redisserver import RedisServer, have_redis, make_certificates

    need(have_redis(), "redis-server is not installed")
    made = make_certificates(tmp_path)
    need(made is not None, "the openssl command is not installed")
    ca, cert, key = made
    server = RedisServer(tmp_path, tls=(cert, key), password="s3cret pw").start()
    server.ca = ca
    yield server
    server.stop(sig=9)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_rediss_with_a_private_ca_and_a_password(tls_redis, tmp_path):
    """rediss:// checks the certificate against --cluster-ca, and AUTH uses the password file."""
    need_module("txredisapi")
    from twisted.internet import reactor

    from gamesession.cluster.redisdir import RedisDirectory
    from gamesession.server import tap

    secret = tmp_path / "pw"
    secret.write_text("s3cret pw\n")

    def directory(*extra):
        options = tap.Options()
        options.parseOptions(["--cluster", tls_redis.url, "--cluster-password-file", str(secret),
                              "--node-name", "n1"] + list(extra))
        return RedisDirectory(options["cluster-address"], reactor).connect()

    good = directory("--cluster-ca", tls_redis.ca)
    try:
        for _ in range(250):
            if good.connected:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        assert good.connected
        assert await good.heartbeat(A, 30.0) is False
        assert await good.live_nodes() == [A]
    finally:
        await good.close()
    # the system's trust store does not know the test CA: never connected
    untrusted = directory()
    try:
        await task.deferLater(reactor, 1.0, lambda: None)
        assert not untrusted.connected
        with pytest.raises(DirectoryUnavailable):
            await untrusted.live_nodes()
    finally:
        await untrusted.close()


def test_cluster_ca_errors_are_one_line(tmp_path):
    from twisted.python import usage

    from gamesession.server import tap

    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for argv, message in [
        (["--cluster", "redis://127.0.0.1", "--cluster-ca", str(junk)], "needs a rediss://"),
        (["--cluster", "rediss://127.0.0.1", "--cluster-ca", str(junk)], "no certificate"),
        (["--cluster", "rediss://127.0.0.1", "--cluster-ca", str(tmp_path / "none")], "--cluster-ca"),
        (["--cluster-ca", str(junk)], "needs --cluster"),
    ]:
        with pytest.raises(usage.UsageError) as info:
            tap.Options().parseOptions(argv)
        assert message in str(info.value) and "\n" not in str(info.value)


@pytest_twisted.ensureDeferred
async def test_restore_in_steps_handles_many_users(world, monkeypatch):
    if world.kind == "redis":
        from gamesession.cluster import redisdir
        monkeypatch.setattr(redisdir, "RESTORE_CHUNK", 7)
    d = world.directory
    await up(world, A, B)
    for i in range(30):
        await d.claim_user("old%d" % i, "node-a", "o", "kick")
    await d.claim_user("u3", "node-b", "b", "kick")
    held = {"u%d" % i: "c%d" % i for i in range(25)}
    assert await d.restore("node-a", held, []) == ["u3"]
    for i in (0, 6, 7, 13, 14, 24):
        assert await d.user_node("u%d" % i) == UserRecord("u%d" % i, "node-a", "c%d" % i)
    for i in (0, 7, 29):
        assert await d.user_node("old%d" % i) is None


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_password_and_database_survive_a_restart(tmp_path):
    """AUTH and SELECT are sent again on every new connection; a wrong password never connects."""
    need_module("txredisapi")
    from conftest import need
    from twisted.internet import reactor

    from gamesession.cluster.redisdir import RedisDirectory, parse_redis_url
    from redisserver import RedisServer, have_redis

    need(have_redis(), "redis-server is not installed")
    server = RedisServer(tmp_path, password="pw").start()
    good = RedisDirectory(parse_redis_url("redis://:pw@127.0.0.1:{}/3".format(server.port)),
                          reactor).connect()
    wrong = RedisDirectory(parse_redis_url("redis://:nope@127.0.0.1:{}/3".format(server.port)),
                           reactor).connect()

    async def works():
        for _ in range(250):
            try:
                await good.heartbeat(A, 30.0)
                return True
            except DirectoryUnavailable:
                await task.deferLater(reactor, 0.02, lambda: None)
        return False
    try:
        assert await works()
        assert server.command("EXISTS", "gamesession:node:node-a", db=3) == b":1\r\n"
        assert server.command("EXISTS", "gamesession:node:node-a") == b":0\r\n"
        server.stop()
        server.start()
        assert await works()
        with pytest.raises(DirectoryUnavailable):
            await wrong.live_nodes()
    finally:
        await good.close()
        await wrong.close()
        server.stop(sig=9)
