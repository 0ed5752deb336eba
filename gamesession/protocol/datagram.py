"""The UDP packet format and the per-session datagram channel.

Sans-I/O, shared by the server and the client.  A packet is

    token (8) | counter (8, little-endian) | secretbox(kind (1) | payload)

The token finds the session in O(1) and travels in clear; the counter is the
nonce and travels in clear; the box is sealed with the sender's direction key,
so a packet whose token was swapped to another session, whose counter was
changed or whose bytes were flipped does not open.  See docs/protocol.md.
"""

import enum
import struct

from gamesession.protocol.handshake import MAX_COUNTER, BadBox, open_box, seal
from gamesession.protocol.replay import ReplayWindow, fresh, mark

TOKEN_SIZE = 8
HEADER_SIZE = TOKEN_SIZE + 8
TAG_SIZE = 16
MIN_PACKET = HEADER_SIZE + TAG_SIZE + 1
# Both ends read datagrams into 8192-byte buffers (Twisted's default); a
# larger packet would arrive truncated and fail to open.
MAX_PACKET = 8192
MAX_PAYLOAD = MAX_PACKET - MIN_PACKET


class Kind(enum.IntEnum):
    PING = 1
    PONG = 2
    KEEPALIVE = 3
    DISCONNECT = 4
    DATA = 5
    ROOM_SEND = 6  # client to server: room datagram to relay (protocol/rooms.py)
    ROOM_RELAY = 7  # server to client: a relayed room datagram, sender stamped


KINDS = frozenset(int(k) for k in Kind)
# The one-byte plaintext prefix of each kind, built once instead of per packet.
_KIND_PREFIX = {int(k): bytes((k,)) for k in Kind}
_header = struct.Struct("<8sQ").pack


class Drop(Exception):
    """A datagram to drop silently; ``reason`` names the counter it goes to."""

    def __init__(self, reason: str):
        self.reason = reason


def plaintext(kind: int, payload: bytes) -> bytes:
    """What a packet's box holds: the kind byte, then the payload (ValueError if too long).

    Built once for a datagram sent to many (``SessionRegistry.fan_out``), then
    sealed once per receiver with ``seal_plaintext``.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("datagram payload over {} bytes".format(MAX_PAYLOAD))
    return (_KIND_PREFIX.get(kind) or bytes((kind,))) + payload


def seal_plaintext(channel: "DatagramChannel", plain: bytes) -> bytes:
    """The packet of ``plain`` sealed by ``channel``: its token, key and next counter.

    The one place a send counter is taken: each call uses a counter once and
    moves it on, so no nonce is ever used twice under a key.  Both
    ``DatagramChannel.seal`` and the fan-out use it.
    """
    counter = channel.send_counter
    if counter >= MAX_COUNTER:
        raise OverflowError("datagram counter exhausted; log in again")
    channel.send_counter = counter + 1
    return _header(channel.token, counter) + seal(channel.send_key, counter, plain)


def split_header(packet: bytes):
    """(token, counter, box) of a packet long enough to hold one, else Drop('short')."""
    if len(packet) < MIN_PACKET:
        raise Drop("short")
    return (
        packet[:TOKEN_SIZE],
        int.from_bytes(packet[TOKEN_SIZE:HEADER_SIZE], "little"),
        packet[HEADER_SIZE:],
    )


class DatagramChannel:
    """One end of a session's UDP channel: seals outgoing, opens incoming.

    ``send_key`` and ``recv_key`` are the direction keys of this end (the
    server sends with udp s2c, the client with udp c2s).  The replay window
    is two numbers in the channel's own slots (``highest``, ``bits``: see
    ``replay.mark``), so a channel is one object; the server's ``Session``
    extends it, which makes a whole session one object on the hot path.
    """

    __slots__ = ("token", "send_key", "recv_key", "send_counter", "highest", "bits")

    def __init__(self, token: bytes, send_key: bytes, recv_key: bytes):
        self.token = token
        self.send_key = send_key
        self.recv_key = recv_key
        self.send_counter = 0
        self.highest = -1
        self.bits = 0

    @property
    def window(self) -> ReplayWindow:
        """A copy of the replay window's state, to look at."""
        return ReplayWindow(highest=self.highest, bits=self.bits)

    def seal(self, kind: int, payload: bytes = b"") -> bytes:
        """The packet of one datagram of ``kind``, sealed under this end's next counter."""
        return seal_plaintext(self, plaintext(kind, payload))

    def open(self, counter: int, box: bytes):
        """(kind, payload, newest) of an authenticated, fresh packet, else Drop.

        The counter is marked as seen only after the box opened.
        """
        highest = self.highest
        # A counter above the newest is fresh: skip the call in the usual case.
        if counter <= highest and not fresh(highest, self.bits, counter):
            raise Drop("replay")
        try:
            plain = open_box(self.recv_key, counter, box)
        except BadBox:
            raise Drop("bad_box")
        self.highest, self.bits, newest = mark(highest, self.bits, counter)
        kind = plain[0] if plain else 0
        if kind not in KINDS:
            raise Drop("bad_kind")
        return kind, plain[1:], newest
