"""Counters a server keeps: plain integers, cheap on the hot path.

The metrics endpoint and the periodic log summaries read them; nothing here
formats or exports.  Names of the Counter keys are the reasons and outcomes
documented in docs/protocol.md and README.md ("Operations").
"""

from bisect import bisect_left
from collections import Counter

import attrs

from gamesession.ops.stalls import STALL_BOUNDS

# Upper bounds (seconds) of the RTT buckets: LAN to a bad mobile link.
RTT_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@attrs.define
class RttHistogram:
    """Round trips of the server's keepalive pings, in fixed buckets.

    ``counts[i]`` holds the samples with ``bounds[i-1] < rtt <= bounds[i]``;
    the last slot holds those above every bound.  Memory is fixed whatever the
    traffic; the metrics endpoint turns it into a Prometheus histogram.
    """

    bounds: tuple = RTT_BOUNDS
    counts: list = attrs.Factory(lambda self: [0] * (len(self.bounds) + 1), takes_self=True)
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


@attrs.define
class RoomStats:
    """Counters of the rooms (server/rooms.py); names in README.md, "Operations"."""

    # Joins by outcome: created, joined, or the refusal (room_full, room_refused, ...).
    joins: Counter = attrs.Factory(Counter)
    # Members gone from rooms, by reason: left, logout, timeout, kicked, closed, ...
    leaves: Counter = attrs.Factory(Counter)
    # Relayed traffic: udp_in, udp_out, tcp_in, tcp_out, udp_no_address.
    relayed: Counter = attrs.Factory(Counter)
    # Requests refused or traffic dropped by a room limit, by option.
    limited: Counter = attrs.Factory(Counter)
    # Handler methods that raised, by method.
    handler_errors: Counter = attrs.Factory(Counter)
    created: int = 0
    # Rooms closed, by why: empty, shutdown, refused, handler.
    closed: Counter = attrs.Factory(Counter)


@attrs.define
class ServerStats:
    udp_in_packets: int = 0
    udp_in_bytes: int = 0
    udp_out_packets: int = 0
    udp_out_bytes: int = 0
    # Datagrams dropped, by reason: short, unknown_token, bad_box, replay, bad_kind, rate_limit, ...
    dropped: Counter = attrs.Factory(Counter)
    # Logins by outcome: ok, auth_failed, server_full, already_logged_in, too_many_attempts, ...
    logins: Counter = attrs.Factory(Counter)
    # Resume requests by outcome: ok, resume_unknown, resume_expired, resume_used,
    # resume_ended, resume_off, too_many_attempts (docs/protocol.md, "Session resume").
    resumes: Counter = attrs.Factory(Counter)
    # Sessions suspended now: their control connection closed, a resume may follow.
    suspended: int = 0
    # Sessions ended, by reason: logout, disconnected, timeout, kicked, replaced, shutdown
    logouts: Counter = attrs.Factory(Counter)
    # TCP connections closed for bad input, by error code name.
    protocol_errors: Counter = attrs.Factory(Counter)
    # TCP connections refused or closed by a limit, by limit: pending_total,
    # pending_per_address, send_buffer (see README.md, "Limits").
    limited: Counter = attrs.Factory(Counter)
    tcp_connections: int = 0
    tcp_pending_login: int = 0
    # Sessions whose UDP return address moved to a new source (NAT rebinding).
    roams: int = 0
    # Round trips of keepalive pings answered by clients.
    rtt: RttHistogram = attrs.Factory(RttHistogram)
    # Reactor stalls measured by --stall-probe (ops/stalls.py): how late its timer fired.
    stalls: RttHistogram = attrs.Factory(lambda: RttHistogram(bounds=STALL_BOUNDS))
    max_stall: float = 0.0
    rooms: RoomStats = attrs.Factory(RoomStats)


def changes(current: dict, previous: dict) -> dict:
    """The counts that moved since ``previous``, as differences, by sorted key.

    Periodic summaries log these, so a quiet period logs nothing.
    """
    return {key: count - previous.get(key, 0) for key, count in sorted(current.items())
            if count != previous.get(key, 0)}
