"""``SnapshotRoom``: an authoritative room that ``bench capacity`` measures, and an example of one.

The server owns the game state.  Members send *inputs* (room datagrams); the
room keeps each member's latest input and, on every tick (``--room-tick
TYPE=HZ``), sends every member one *snapshot* of the whole room: every
member's state, plus the sequence number of the receiver's last input the
room has processed -- the acknowledgement a client uses to drop the inputs
it no longer needs to predict with (client-side prediction and
reconciliation).  The snapshot also carries the tick number and the server's
clock at the tick, which clients interpolate with.

Run it with::

    twistd -n gamesession --room arena=gamesession.bench.tickroom.SnapshotRoom \\
        --room-tick arena=20

Wire format (little-endian; the room datagram data, inside the sealed
ROOM_SEND / ROOM_RELAY):

* input, member -> room: ``seq`` u32, then up to ``STATE_SIZE`` bytes of the
  member's state (shorter is zero-padded, longer is cut).  An input with a
  ``seq`` not above the member's last one (a duplicate, or one overtaken on
  the way) is ignored; less than 4 bytes is counted in ``malformed`` and
  ignored.
* snapshot, room -> each member (sender 0, the room): ``SNAPSHOT_HEADER`` =
  ``tick`` u32, ``server_time`` f64 (seconds, the server's clock), ``ack`` u32
  (the receiver's last processed input ``seq``; 0 before its first),
  ``ack_arrived`` f64 (the server's clock when that input arrived; 0 before
  the first), ``count`` u16; then ``count`` entries of ``ENTRY`` =
  ``member_id`` u32 and ``STATE_SIZE`` bytes of state, in join order.

``ack_arrived`` and ``server_time`` tell a client how long its input waited
for the tick and how old the snapshot is: what it needs to time its inputs
so that they arrive just before the tick (as fast-paced games do) -- and what
``bench capacity`` measures the server's latency with.

Each member gets its own snapshot (its own ``ack``), as in real authoritative
games where a snapshot is per client (acks, deltas against what that client
acknowledged): the entries are built once per tick, the header per member.
A tick of an empty room sends nothing.
"""

import struct

from gamesession.server.roomhandler import RelayRoom

STATE_SIZE = 12  # e.g. a position: three float32
INPUT = struct.Struct("<I")
SNAPSHOT_HEADER = struct.Struct("<IdIdH")
ENTRY = struct.Struct("<I")
ENTRY_SIZE = ENTRY.size + STATE_SIZE
_ZERO_STATE = bytes(STATE_SIZE)


class SnapshotRoom(RelayRoom):
    """Members' inputs in, one snapshot per member per tick out (see the module docstring).

    ``inputs`` maps member id -> [last input seq, state bytes, when it
    arrived] for every member (bounded by the room's seats); ``ticks`` counts the snapshots
    rounds sent, ``malformed`` the inputs too short to read.
    """

    def room_created(self, room):
        self.inputs = {}
        self.ticks = 0
        self.malformed = 0

    def joined(self, room, member):
        self.inputs[member.member_id] = [0, _ZERO_STATE, 0.0]

    def left(self, room, member, reason):
        self.inputs.pop(member.member_id, None)

    def message_received(self, room, member, payload, to):
        pass  # authoritative: nothing is relayed between members

    def datagram_received(self, room, member, payload, to):
        if len(payload) < INPUT.size:
            self.malformed += 1
            return
        entry = self.inputs.get(member.member_id)
        if entry is None:
            return
        (seq,) = INPUT.unpack_from(payload)
        if seq <= entry[0]:
            return  # a duplicate, or overtaken by a newer input
        state = payload[INPUT.size:INPUT.size + STATE_SIZE]
        if len(state) < STATE_SIZE:
            state = state + bytes(STATE_SIZE - len(state))
        entry[0] = seq
        entry[1] = state
        entry[2] = room.server.clock.seconds()

    def tick(self, room, dt):
        inputs = self.inputs
        if not inputs:
            return
        self.ticks += 1
        tick = self.ticks & 0xFFFFFFFF
        now = room.server.clock.seconds()
        count = len(inputs)
        pack = ENTRY.pack
        body = b"".join([pack(member_id) + entry[1] for member_id, entry in inputs.items()])
        header = SNAPSHOT_HEADER.pack
        room.send_datagrams([(member_id, header(tick, now, entry[0], entry[2], count) + body)
                             for member_id, entry in inputs.items()])


def parse_snapshot(data: bytes):
    """(tick, server_time, ack, ack_arrived, [(member_id, state), ...]) of a snapshot's
    data; ValueError if it is malformed (what a client of a SnapshotRoom reads)."""
    if len(data) < SNAPSHOT_HEADER.size:
        raise ValueError("snapshot of {} bytes is shorter than its header".format(len(data)))
    tick, server_time, ack, ack_arrived, count = SNAPSHOT_HEADER.unpack_from(data)
    end = SNAPSHOT_HEADER.size + count * ENTRY_SIZE
    if len(data) != end:
        raise ValueError("snapshot of {} bytes for {} entries".format(len(data), count))
    entries = []
    for offset in range(SNAPSHOT_HEADER.size, end, ENTRY_SIZE):
        (member_id,) = ENTRY.unpack_from(data, offset)
        entries.append((member_id, data[offset + ENTRY.size:offset + ENTRY_SIZE]))
    return tick, server_time, ack, ack_arrived, entries
