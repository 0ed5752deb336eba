"""Room seats survive a resume: presence reconnecting, then back; disconnected after the grace."""

from gamesession.protocol import rooms as codec
from gamesession.protocol import wire
from gamesession.protocol.clientcore import Resumed
from gamesession.server.roomhandler import RelayRoom

from test_rooms import Presence, Server


class Watching(RelayRoom):
    calls = []

    def member_suspended(self, room, member):
        self.calls.append(("suspended", member.user))

    def member_resumed(self, room, member):
        self.calls.append(("resumed", member.user))

    def left(self, room, member, reason):
        self.calls.append(("left", member.user, reason))


def two_in_a_room(**registry_options):
    server = Server(users=("alice", "bob"), handlers={"dm": Watching},
                    registry_options=dict(resume_grace=20.0, **registry_options))
    alice, bob = server.players
    joined = alice.create("dm")
    bob.join(joined.room)
    alice.events()
    Watching.calls = []
    return server, alice, bob, joined.room


def test_the_others_see_reconnecting_then_back_and_the_seat_stays():
    server, alice, bob, room = two_in_a_room()
    alice.conn.lose()
    assert bob.events() == [Presence(room, "reconnecting", 1, "alice", None)]
    assert server.rooms.rooms_of(alice.session) and len(server.rooms.find(room).members) == 2
    # Relays keep flowing to and from the suspended member over UDP.
    bob.room_datagram(room, b"pos")
    assert [(user, event.data) for user, event in server.relays()] == [("alice", b"pos")]
    alice.conn = server.harness.connect()
    [resumed] = [e for e in alice.conn.resume(alice.core) if isinstance(e, Resumed)]
    assert bob.events() == [Presence(room, "back", 1, "alice", None)]
    assert Watching.calls == [("suspended", "alice"), ("resumed", "alice")]
    # The same member id, still in the room; its room traffic goes on under the new keys.
    assert server.rooms.find(room).members[1].session is alice.session
    alice.room_datagram(room, b"after")
    assert [(user, event.data) for user, event in server.relays()] == [("bob", b"after")]


def test_room_events_for_a_suspended_member_arrive_after_the_resume():
    server, alice, bob, room = two_in_a_room()
    alice.conn.lose()
    bob.request(codec.send(room, b"while away"))
    conn = alice.conn = server.harness.connect()
    core = alice.core
    conn.send(core.reconnect())
    [challenge] = conn.received()
    [request], _ = core.frame_received(challenge)
    conn.send(request)
    resumed, *rest = conn.received()
    assert isinstance(core.frame_received(resumed)[1][0], Resumed)
    events = [codec.parse_event(wire.decode(core.receiver.open(wire.unseal_envelope(wire.decode(f)))))
              for f in rest]
    assert [e.data for e in events if isinstance(e, codec.RoomMessage)] == [b"while away"]


def test_after_the_grace_the_member_leaves_disconnected():
    server, alice, bob, room = two_in_a_room(session_timeout=60.0)
    alice.conn.lose()
    assert [e.event for e in bob.events()] == ["reconnecting"]
    server.clock.advance(20.1)
    assert bob.events() == [Presence(room, "leave", 1, "alice", "disconnected")]
    assert Watching.calls == [("suspended", "alice"), ("left", "alice", "disconnected")]
    assert not server.rooms.rooms_of(alice.session)
