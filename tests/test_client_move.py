"""GameClient following a redirect when the move fails: it stays on the first node.

(Moves that succeed: tests/test_cluster_rooms_process.py, against two real nodes.)
"""

import pytest
import pytest_twisted
from twisted.internet import defer

from gamesession.protocol.rooms import RoomRefused
from gamesession.protocol.transfer import RoomRedirect
from test_client import connect, server  # noqa: F401  (the in-process server fixture)

pytestmark = [pytest.mark.network, pytest.mark.timeout(30)]


@pytest_twisted.ensureDeferred
async def test_a_refused_ticket_fails_the_join_and_the_session_goes_on(server):  # noqa: F811
    alice = await connect(server, "alice")
    rid = alice.core._rid()  # a request id, as a room_join that got the redirect had
    join = defer.Deferred()
    alice._requests[rid] = join
    moves = []
    alice.on_moved = moves.append
    # This server is not in a cluster: it refuses the ticket login (419).
    alice._room_event(RoomRedirect(rid, bytes(8), "127.0.0.1", server.login_port,
                                   server.login_factory.public_udp_port, "A" * 22, 10.0))
    with pytest.raises(RoomRefused) as refused:
        await join
    assert refused.value.code == 419 and "could not move" in refused.value.reason
    assert moves == [] and alice.end_reason is None
    assert await alice.ping() >= 0
    room = await alice.create_room("duel")  # the TCP channel is still in step
    assert room.members == {room.member: "alice"}
    assert await alice.logout() == "logout"
