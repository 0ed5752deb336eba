"""Counters a server keeps: plain integers, cheap on the hot path.

The metrics endpoint and the periodic log summaries read them; nothing here
formats or exports.  Names of the Counter keys are the reasons and outcomes
documented in docs/protocol.md and README.md ("Operations").
"""

from collections import Counter

import attrs


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
