"""GameClient rooms against an in-process server on loopback (real sockets, short timers)."""

import pytest
import pytest_twisted
from twisted.internet import defer, task

from gamesession.client.gameclient import SessionClosed
from gamesession.client.room import RoomClosed
from gamesession.protocol.clientcore import MAX_ROOM_MESSAGE, PayloadTooLarge, RoomPresence
from gamesession.protocol.rooms import RoomRefused
from test_client import connect, server  # noqa: F401  (the in-process server fixture)

pytestmark = [pytest.mark.network, pytest.mark.timeout(30)]


def next_event(room, slot, match=lambda event: True):
    """A Deferred that fires with the next event of ``slot`` ('on_message', ...)
    that ``match`` accepts (events before it are dropped)."""
    d = defer.Deferred()

    def got(event):
        if not match(event) or d.called:
            return
        setattr(room, slot, None)
        d.callback(event)

    setattr(room, slot, got)
    return d.addTimeout(5, _reactor())


async def refusal(request) -> int:
    """The code of the RoomRefused that awaiting ``request`` raises."""
    with pytest.raises(RoomRefused) as refused:
        await request
    return refused.value.code


def _reactor():
    from twisted.internet import reactor
    return reactor


@pytest_twisted.ensureDeferred
async def test_two_clients_meet_in_a_room_talk_and_part(server):  # noqa: F811
    alice = await connect(server, "alice")
    bob = await connect(server, "bob")
    room_a = await alice.create_room("duel", label={"map": "q2dm1"}, max_members=2)
    assert room_a.created and room_a.members == {room_a.member: "alice"}
    assert len(room_a.id) == 16 and alice.rooms == {room_a.id: room_a}

    room_b = await bob.join_room(room_a.id)
    assert not room_b.created and room_b.id == room_a.id
    assert room_b.members == {room_a.member: "alice", room_b.member: "bob"}
    assert room_b.label == {"map": "q2dm1"}

    # alice's presence event arrived while she had no handler: it waited for one.
    await task.deferLater(_reactor(), 0.2, lambda: None)
    seen = []
    room_a.on_presence = seen.append
    assert seen == [RoomPresence(room_a.room_id, "join", room_b.member, "bob", None)]
    assert room_a.members == room_b.members

    room_b.send_message(b"hello alice")
    event = await next_event(room_a, "on_message")
    assert (event.sender, room_a.user(event.sender), event.data) == (
        room_b.member, "bob", b"hello alice")
    room_a.send_datagram(b"pos 1 2", to=room_b.member)
    event = await next_event(room_b, "on_datagram")
    assert (room_b.user(event.sender), event.data) == ("alice", b"pos 1 2")

    # Too large is refused by the client, before sending: the session lives on.
    with pytest.raises(PayloadTooLarge):
        room_b.send_message(b"x" * (MAX_ROOM_MESSAGE + 1))
    room_b.send_message(b"x" * MAX_ROOM_MESSAGE)
    assert (await next_event(room_a, "on_message")).data == b"x" * MAX_ROOM_MESSAGE

    left = next_event(room_a, "on_presence", lambda e: e.event == "leave")
    waiting = room_b.wait_left()  # someone waiting already must not stop leave() from asking
    assert await room_b.leave().addTimeout(5, _reactor()) == "left"
    assert await waiting == "left"
    event = await left
    assert (event.event, event.user, event.reason) == ("leave", "bob", "left")
    assert room_a.members == {room_a.member: "alice"} and bob.rooms == {}
    with pytest.raises(RoomClosed, match="left"):
        room_b.send_message(b"too late")
    await alice.logout()
    await bob.logout()


@pytest_twisted.ensureDeferred
async def test_join_or_create_list_and_refusals(server):  # noqa: F811
    alice = await connect(server, "alice")
    bob = await connect(server, "bob")
    first = await alice.join_or_create("ffa", label={"mode": "ffa"}, max_members=2)
    second = await bob.join_or_create("ffa")
    assert first.created and not second.created and first.id == second.id
    [info] = await alice.list_rooms("ffa")
    assert (info.room.hex(), info.members, info.max_members, info.label) == (
        first.id, 2, 2, {"mode": "ffa"})
    assert await alice.list_rooms("other") == []
    assert await refusal(bob.join_room("0123456789abcdef")) == 460
    assert await refusal(bob.join_room(first.id)) == 467  # already in it
    private = await alice.create_room("ffa", listed=False)
    assert [i.room.hex() for i in await bob.list_rooms("ffa")] == [first.id]
    assert await refusal(alice.join_room(private.id)) == 467
    await alice.logout()
    await bob.logout()


@pytest_twisted.ensureDeferred
async def test_a_session_that_ends_leaves_its_rooms_and_fails_what_waits(server):  # noqa: F811
    alice = await connect(server, "alice")
    bob = await connect(server, "bob")
    room_a = await alice.create_room("duel")
    room_b = await bob.join_room(room_a.id)
    gone = next_event(room_a, "on_presence", lambda e: e.event == "leave")
    server.registry.by_user["bob"].kick()
    assert await room_b.wait_left().addTimeout(5, _reactor()) == "kicked"
    event = await gone
    assert (event.event, event.user) == ("leave", "bob")
    with pytest.raises(SessionClosed):
        await bob.join_room(room_a.id)
    with pytest.raises(RoomClosed):
        room_b.send_datagram(b"x")
    await alice.logout()


@pytest.mark.parametrize("server", [["--max-relay-rate", "1"]], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_refusal_that_answers_no_request_reaches_on_room_error(server):  # noqa: F811
    alice = await connect(server, "alice")
    bob = await connect(server, "bob")
    room_a = await alice.create_room("chat")
    room_b = await bob.join_room(room_a.id)
    for n in range(3):  # a budget of one copy per second: the later ones are refused
        room_a.send_message(b"spam %d" % n)
    refused = defer.Deferred()
    alice.on_room_error = lambda e: refused.called or refused.callback(e)
    error = await refused.addTimeout(5, _reactor())
    assert error.code == 469 and error.rid is None
    assert (await next_event(room_b, "on_message")).data == b"spam 0"
    await alice.logout()
    await bob.logout()
