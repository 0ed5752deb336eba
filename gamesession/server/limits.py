"""Limits that keep one client (or one address) from taking the server's resources.

Sans-I/O; time is passed in.  ``TokenBucket`` caps the datagrams a session may
send per second (checked after a packet authenticated, so only the session's
own key holder can spend its budget).  ``PendingLogins`` caps TCP connections
that have not logged in yet, per source address and in total.
``LoginAttempts`` remembers failed logins per address in a bounded LRU table
and makes a failing address wait, doubling the wait with each further failure.
The outgoing-queue limit lives in ``login.LoginProtocol`` (it needs the
transport's producer callbacks).  Options and defaults: README.md, "Limits".
"""

from collections import OrderedDict

import attrs

DEFAULT_DATAGRAM_RATE = 200.0
DEFAULT_MAX_PENDING = 1024
DEFAULT_MAX_PENDING_PER_ADDRESS = 32
DEFAULT_MAX_LOGIN_FAILURES = 5
DEFAULT_LOGIN_BACKOFF = 1.0
DEFAULT_LOGIN_BACKOFF_MAX = 60.0
DEFAULT_MAX_SEND_BUFFER = 256 * 1024
DEFAULT_ATTEMPT_TABLE_SIZE = 10000


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token per datagram.

    Per-datagram cost: a few float operations and two attribute stores.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means over the limit."""
        self.tokens, taken = spend_token(self.tokens, self.stamp, now, self.rate, self.burst)
        self.stamp = now
        return taken


def spend_token(tokens: float, stamp: float, now: float, rate: float, burst: float):
    """``(tokens left, taken)``: a bucket that held ``tokens`` at ``stamp``, refilled at
    ``rate`` up to ``burst`` until ``now``, then one token spent if there is one.

    The arithmetic of ``TokenBucket``, for state kept elsewhere (the server's
    sessions keep the two numbers in their own slots).
    """
    tokens += (now - stamp) * rate
    if tokens > burst:
        tokens = burst
    if tokens < 1.0:
        return tokens, False
    return tokens - 1.0, True


class PendingLogins:
    """Counts connections that have not logged in yet, by source address.

    ``admit(host)`` returns None and counts the connection, or the name of the
    limit that refuses it (``pending_total``, ``pending_per_address``);
    ``release(host)`` undoes an admitted connection.  Addresses with no
    pending connection take no memory.
    """

    def __init__(self, max_total: int = DEFAULT_MAX_PENDING,
                 max_per_address: int = DEFAULT_MAX_PENDING_PER_ADDRESS):
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.by_host = {}

    def admit(self, host) -> "str | None":
        if self.total >= self.max_total:
            return "pending_total"
        count = self.by_host.get(host, 0)
        if count >= self.max_per_address:
            return "pending_per_address"
        self.by_host[host] = count + 1
        self.total += 1
        return None

    def release(self, host) -> None:
        count = self.by_host.get(host, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self.by_host[host]
        else:
            self.by_host[host] = count - 1


@attrs.define
class _Failures:
    count: int
    last: float
    blocked_until: float


class LoginAttempts:
    """Failed logins per address, with exponential backoff; bounded and expiring.

    The first ``free`` failures of an address cost nothing; each one after
    that blocks the address for ``backoff * 2**(n - free)`` seconds, at most
    ``backoff_max``.  A successful login forgets the address; so does
    ``expiry`` seconds without a failure.  At most ``size`` addresses are
    remembered: the least recently failed is forgotten first, so an attacker
    with many addresses can only make the table forget, never grow.
    """

    def __init__(self, free: int = DEFAULT_MAX_LOGIN_FAILURES,
                 backoff: float = DEFAULT_LOGIN_BACKOFF,
                 backoff_max: float = DEFAULT_LOGIN_BACKOFF_MAX,
                 size: int = DEFAULT_ATTEMPT_TABLE_SIZE,
                 expiry: "float | None" = None):
        self.free = free
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.size = size
        self.expiry = expiry if expiry is not None else max(10 * backoff_max, 60.0)
        self.table = OrderedDict()

    def __len__(self):
        return len(self.table)

    def _entry(self, host, now):
        entry = self.table.get(host)
        if entry is not None and now - entry.last >= self.expiry:
            del self.table[host]
            return None
        return entry

    def wait(self, host, now: float) -> float:
        """Seconds ``host`` must still wait before its next login attempt (0: go)."""
        entry = self._entry(host, now)
        if entry is None or entry.blocked_until <= now:
            return 0.0
        return entry.blocked_until - now

    def failed(self, host, now: float) -> None:
        entry = self._entry(host, now)
        if entry is None:
            entry = _Failures(0, now, now)
            self.table[host] = entry
            while len(self.table) > self.size:
                self.table.popitem(last=False)
        else:
            self.table.move_to_end(host)
        entry.count += 1
        entry.last = now
        over = entry.count - self.free
        if over > 0:
            delay = self.backoff * 2.0 ** min(over - 1, 62)
            entry.blocked_until = now + min(delay, self.backoff_max)

    def succeeded(self, host) -> None:
        self.table.pop(host, None)


@attrs.define
class Limits:
    """The TCP-side limits a LoginFactory enforces (the UDP rate is the registry's)."""

    pending: PendingLogins = attrs.Factory(PendingLogins)
    attempts: LoginAttempts = attrs.Factory(LoginAttempts)
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER
