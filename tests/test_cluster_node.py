"""ClusterNode on the in-memory directory: two or three nodes in one process.

Each node is a ``fakes.Harness`` (its own registry and login factory) whose
registry admits logins through a ``ClusterNode``; all share one clock and
one ``InMemoryDirectory``.  The same rules against Redis and real twistd
processes: tests/test_cluster.py.
"""

import pytest
from twisted.internet import defer, task

from fakes import Harness, logged_events
from gamesession.cluster.directory import DirectoryUnavailable, NodeRecord
from gamesession.cluster.memory import InMemoryDirectory
from gamesession.cluster.node import ClusterNode
from gamesession.protocol.clientcore import LoginFailed, SessionEnded
from gamesession.protocol.wire import ErrorCode

TTL = 3.0


class OutageDirectory(InMemoryDirectory):
    """The in-memory directory that can be taken down (every call then fails)."""

    down = False

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if (name in ("heartbeat", "claim_user", "release_user", "restore", "deregister")
                and super().__getattribute__("down")):
            return lambda *a, **k: defer.fail(DirectoryUnavailable())
        return attr

    def restart_empty(self):
        """What a Redis restart without persistence does."""
        self.nodes.clear()
        self.users.clear()
        self.rooms.clear()


class Cluster:
    def __init__(self, names=("a", "b"), duplicate_login="kick", **registry_options):
        self.clock = task.Clock()
        self.directory = OutageDirectory(self.clock)
        self.harness, self.node = {}, {}
        for index, name in enumerate(names):
            harness = Harness(clock=self.clock, duplicate_login=duplicate_login, **registry_options)
            node = ClusterNode(self.directory, NodeRecord("node-" + name, "127.0.0.1", 7000 + index),
                               harness.registry, self.clock, ttl=TTL,
                               duplicate_login=duplicate_login)
            harness.registry.admission = node
            node.startService()
            self.harness[name], self.node[name] = harness, node

    def holder(self, user):
        record = self.directory.user_node(user).result
        return record.node if record else None

    def advance(self, seconds, step=0.25):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)


@pytest.fixture
def cluster():
    return Cluster()


def test_nodes_register_on_start(cluster):
    assert [n.name for n in cluster.directory.live_nodes().result] == ["node-a", "node-b"]
    assert cluster.node["a"].up and cluster.node["b"].up


def test_kick_ends_the_session_on_the_other_node(cluster):
    first, old = cluster.harness["a"].logged_in("alice")
    assert cluster.holder("alice") == "node-a"
    second, new = cluster.harness["b"].logged_in("alice")
    assert old.ended == "replaced" and new.ended is None
    assert first.pump() == [SessionEnded("replaced")]
    assert cluster.holder("alice") == "node-b"
    assert "alice" not in cluster.harness["a"].registry.by_user
    assert cluster.node["a"].replaced == 1


def test_a_second_login_on_the_same_node_keeps_the_entry(cluster):
    cluster.harness["a"].logged_in("alice")
    _, new = cluster.harness["a"].logged_in("alice")
    assert new.ended is None
    assert cluster.directory.users["alice"].claim == cluster.node["a"].held["alice"][1]


def test_reject_refuses_on_the_other_node_with_409():
    cluster = Cluster(duplicate_login="reject")
    _, session = cluster.harness["a"].logged_in("bob")
    with pytest.raises(LoginFailed) as refused:
        cluster.harness["b"].connect().login("bob")
    assert refused.value.code == ErrorCode.ALREADY_LOGGED_IN
    assert session.ended is None
    assert cluster.harness["b"].stats.logins["already_logged_in"] == 1
    assert cluster.holder("bob") == "node-a"


@pytest.mark.parametrize("how", ["logout", "timeout", "kicked", "disconnected"])
def test_every_session_end_removes_the_user(cluster, how):
    connection, session = cluster.harness["a"].logged_in("alice")
    if how == "logout":
        cluster.harness["a"].registry.end(session, "logout")
    elif how == "timeout":
        cluster.advance(11)
        cluster.harness["a"].registry.sweep()
        assert session.ended == "timeout"
    elif how == "kicked":
        session.kick()
    else:
        connection.lose()
    assert cluster.holder("alice") is None
    assert cluster.node["a"].held == {}


def test_directory_down_refuses_logins_with_503_but_keeps_sessions(cluster):
    harness = cluster.harness["a"]
    _, session = harness.logged_in("alice")
    cluster.directory.down = True
    cluster.advance(1.5)
    assert not cluster.node["a"].up
    with pytest.raises(LoginFailed) as refused:
        harness.connect().login("bob")
    assert refused.value.code == 503
    assert "cluster directory unavailable" in str(refused.value)
    assert harness.stats.logins["directory_unavailable"] == 1
    assert session.ended is None
    # back, empty (a restart without persistence): alice is registered again
    cluster.directory.restart_empty()
    cluster.directory.down = False
    cluster.advance(1.0)
    assert cluster.node["a"].up
    assert cluster.holder("alice") == "node-a"
    harness.logged_in("bob")


def test_a_dead_node_drops_out_within_the_ttl_and_its_users_log_in_elsewhere():
    cluster = Cluster(duplicate_login="reject")
    _, session = cluster.harness["a"].logged_in("alice")
    dead = cluster.node["a"]
    dead._stopping = True  # kill -9: no more heartbeats, no goodbye
    dead._call.cancel()
    with pytest.raises(LoginFailed):
        cluster.harness["b"].connect().login("alice")
    cluster.advance(TTL + 0.5)
    assert [n.name for n in cluster.directory.live_nodes().result] == ["node-b"]
    cluster.harness["b"].logged_in("alice")
    assert cluster.holder("alice") == "node-b"


def test_after_an_outage_a_user_taken_elsewhere_ends_here(cluster):
    """Node a lost the directory for longer than the TTL; alice logged in on b meanwhile."""
    a = cluster.harness["a"]
    _, session = a.logged_in("alice")
    node_a = cluster.node["a"]
    real = cluster.directory.heartbeat

    def only_b(node, ttl):
        if node.name == "node-a":
            return defer.fail(DirectoryUnavailable())
        return real(node, ttl)
    cluster.directory.heartbeat = only_b
    cluster.advance(TTL + 0.5)
    assert not node_a.up or cluster.directory.live_nodes().result[0].name == "node-b"
    cluster.harness["b"].logged_in("alice")  # a is dead in the directory: b takes alice
    del cluster.directory.heartbeat
    cluster.advance(1.0)
    assert node_a.up
    assert session.ended == "replaced"
    assert cluster.holder("alice") == "node-b"


def test_clean_stop_deregisters_the_node_and_its_users(cluster):
    cluster.harness["a"].logged_in("alice")
    d = cluster.node["a"].stopService()
    assert d.called
    assert [n.name for n in cluster.directory.live_nodes().result] == ["node-b"]
    assert cluster.holder("alice") is None


def test_directory_operations_are_timed(cluster):
    cluster.harness["a"].logged_in("alice")
    timings = cluster.node["a"].timings
    assert timings["heartbeat"].count >= 1 and timings["claim_user"].count == 1


def test_malformed_events_are_ignored(cluster):
    _, session = cluster.harness["a"].logged_in("alice")
    node = cluster.node["a"]
    for event in ({}, {"type": "replaced"}, {"type": "replaced", "user": ["alice"]},
                  {"type": "replaced", "user": "alice", "claim": "not-hers"},
                  {"type": "other", "user": "alice", "claim": node.held["alice"][1]}):
        node._event(event)
    assert session.ended is None


def test_a_directory_error_refuses_the_login_with_503_not_500(cluster):
    cluster.directory.claim_user = lambda *a: defer.fail(RuntimeError("script bug"))
    with pytest.raises(LoginFailed) as refused:
        cluster.harness["a"].connect().login("bob")
    assert refused.value.code == 503


def test_a_client_gone_during_the_claim_releases_it(cluster):
    """The claim answers after the client left: the node gives the user back."""
    pending, asked = defer.Deferred(), []
    cluster.directory.claim_user = lambda *args: asked.append(args) or pending
    connection = cluster.harness["a"].connect()
    connection.send(connection.handshake("alice"))
    assert asked
    connection.lose()
    del cluster.directory.claim_user
    pending.callback(cluster.directory.claim_user(*asked[0]).result)
    assert cluster.holder("alice") is None
    assert cluster.node["a"].held == {} and "alice" not in cluster.harness["a"].registry.by_user


def test_hosted_rooms_are_listed_and_restored_after_the_directory_lost_them(cluster):
    from gamesession.cluster.directory import RoomRecord

    node = cluster.node["a"]
    node.host_room(RoomRecord("r1", "duel", "node-a", "first", seats=2))
    node.host_room(RoomRecord("r2", "duel", "node-a", "second", seats=2))
    node.room_changed("r1", occupied=1)
    node.room_closed("r2")
    listed = cluster.directory.list_rooms("duel").result
    assert [(r.room_id, r.occupied) for r in listed] == [("r1", 1)]
    with pytest.raises(ValueError):
        node.host_room(RoomRecord("r3", "duel", "node-b"))
    cluster.directory.restart_empty()
    cluster.advance(1.5)
    assert cluster.directory.list_rooms("duel").result == [node.rooms["r1"]]
    assert node.timings["register_room"].count == 2


def test_shutdown_deregisters_once_instead_of_releasing_each_user(cluster):
    for user in ("alice", "bob", "carol"):
        cluster.harness["a"].logged_in(user)
    cluster.harness["a"].registry.shutdown()
    cluster.node["a"].stopService()
    assert "release_user" not in cluster.node["a"].timings
    assert cluster.node["a"].timings["deregister"].count == 1
    assert all(cluster.holder(user) is None for user in ("alice", "bob", "carol"))


# -- edges the mutation run found unpinned (docs/testing.md) ----------------------------------

def test_a_login_refused_here_after_its_claim_gives_the_user_back():
    """The cluster admitted the login, then a local limit refused it (here the
    per-address one): the claim is released, or, if the user still has a
    session on this node, handed back to that session."""
    cluster = Cluster(max_sessions_per_address=1)
    a = cluster.harness["a"]
    _, alice = a.logged_in("alice", host="192.0.2.1")
    a.logged_in("bob", host="192.0.2.2")
    with pytest.raises(LoginFailed) as refused:
        a.connect(host="192.0.2.2").login("carol")
    assert refused.value.code == ErrorCode.SERVER_FULL
    assert cluster.holder("carol") is None
    held = cluster.node["a"].held["alice"]
    with pytest.raises(LoginFailed):
        a.connect(host="192.0.2.2").login("alice")  # claimed anew, then refused here
    assert alice.ended is None and cluster.node["a"].held["alice"] == held
    record = cluster.directory.users["alice"]
    assert (record.node, record.claim) == ("node-a", held[1])


def test_admit_applies_the_duplicate_login_rule_unless_the_user_moves():
    cluster = Cluster(duplicate_login="reject")
    cluster.harness["a"].logged_in("bob")
    refused = []
    cluster.node["b"].admit("bob").addErrback(refused.append)
    assert refused[0].value.code == ErrorCode.ALREADY_LOGGED_IN
    assert refused[0].value.reason == "user bob is already logged in"
    with pytest.raises(LoginFailed) as failed:
        cluster.harness["b"].connect().login("bob")
    assert failed.value.reason == "user bob is already logged in"
    claims = []
    cluster.node["b"].admit("bob", moving=True).addCallback(claims.append)
    assert claims and cluster.holder("bob") == "node-b"


def test_a_directory_error_is_logged_as_a_failure_an_outage_is_not(cluster):
    from twisted.logger import formatEvent

    def failures_of(run):
        return [e for e in logged_events(run) if "log_failure" in e]

    def login(name):
        with pytest.raises(LoginFailed) as refused:
            cluster.harness["a"].connect().login(name)
        assert refused.value.code == 503

    cluster.directory.claim_user = lambda *a: defer.fail(RuntimeError("script bug"))
    [logged] = failures_of(lambda: login("carol"))
    assert logged["user"] == "carol" and logged["log_failure"].check(RuntimeError)
    assert formatEvent(logged) == "cluster claim of user=carol failed"
    # An outage is no bug: refused with 503, nothing logged as a failure.
    cluster.directory.claim_user = lambda *a: defer.fail(DirectoryUnavailable("redis went away"))
    assert failures_of(lambda: login("bob")) == []
