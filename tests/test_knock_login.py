"""The knock gate in front of the real LoginProtocol, driven synchronously."""

from gamesession.protocol.clientcore import Welcome
from gamesession.knock.rule import Knocker, KnockGate

from fakes import Harness

SEQ = (7102, 7101, 7103)
PEER = "198.51.100.7"


def gated_harness(grant=30):
    harness = Harness(users={"alice": "pw"})
    knocker = Knocker(SEQ, grant=grant)
    harness.factory.gate = KnockGate(knocker, harness.clock)
    return harness, knocker


def knock(harness, knocker, host=PEER):
    for port in SEQ:
        knocker.knock(host, port, b"\x00", harness.clock.seconds())


def test_unknocked_connection_is_closed_before_a_byte():
    harness, knocker = gated_harness()
    connection = harness.connect()
    assert connection.closed
    assert connection.transport.value() == b""
    assert knocker.stats["rejected_connections"] == 1
    assert harness.stats.tcp_connections == 0  # never reached the login
    connection.lose()  # the abort's connectionLost is harmless


def test_knocked_address_logs_in_and_stays_after_the_grant():
    harness, knocker = gated_harness(grant=30)
    knock(harness, knocker)
    connection = harness.connect()
    [welcome] = connection.login("alice", "pw")
    assert isinstance(welcome, Welcome)
    assert harness.connect(host="203.0.113.9").closed  # others still shut out

    harness.clock.advance(31)
    assert harness.connect().closed  # the grant is over for new connections...
    assert not connection.closed  # ...but the open one continues
    assert harness.registry.by_user["alice"].user == "alice"
