"""Limits that keep one client (or one address) from taking the server's resources.

Sans-I/O; time is passed in.  ``TokenBucket`` caps the datagrams a session may
send per second (checked after a packet authenticated, so only the session's
own key holder can spend its budget).  ``PendingLogins`` caps TCP connections
that have not logged in yet, per source address, per subnet and in total, and
picks the idle connection to push out when the total is reached.
``HelloLimiter`` rate-limits hellos (the X25519 work) per address and subnet.
``LoginAttempts`` remembers failed logins per address in a bounded LRU table
and makes a failing address wait, doubling the wait with each further failure;
a success forgives only the failures for the user who logged in.
The outgoing-queue limit lives in ``login.LoginProtocol`` (it needs the
transport's producer callbacks).  Options and defaults: README.md, "Limits".
"""

import ipaddress
from collections import OrderedDict

import attrs

DEFAULT_DATAGRAM_RATE = 200.0
DEFAULT_MAX_PENDING = 1024
DEFAULT_MAX_PENDING_PER_ADDRESS = 32
DEFAULT_MAX_PENDING_PER_SUBNET = 256
DEFAULT_HELLO_TIMEOUT = 3.0
DEFAULT_HELLO_RATE = 20.0
DEFAULT_HELLO_BURST = 64.0
DEFAULT_HELLO_RATE_PER_SUBNET = 100.0
DEFAULT_HELLO_BURST_PER_SUBNET = 256.0
DEFAULT_MAX_LOGIN_FAILURES = 5
DEFAULT_LOGIN_BACKOFF = 1.0
DEFAULT_LOGIN_BACKOFF_MAX = 60.0
DEFAULT_MAX_SEND_BUFFER = 256 * 1024
DEFAULT_LISTEN_BACKLOG = 1024
DEFAULT_MESSAGE_RATE = 100.0
DEFAULT_MESSAGE_BYTES_RATE = 128 * 1024.0
# Seconds' worth of the message rates a session may send at once.
MESSAGE_BURST_SECONDS = 2.0
DEFAULT_ATTEMPT_TABLE_SIZE = 10000
# A LAN party of 64 players behind one NAT address fits; one guest address can
# no longer fill the whole server.
DEFAULT_MAX_SESSIONS_PER_ADDRESS = 64


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


class MessageMeter:
    """A session's TCP messages per second and bytes per second, after login.

    ``charge(now, size)`` books one message of ``size`` bytes and returns
    how many seconds the connection must stop reading so that both rates
    hold on average (0.0: go on).  Each bucket holds ``burst_seconds`` of its
    rate; a message is never refused (TCP is reliable), the reader is paused
    until the debt is paid, so a flooding client is slowed to the rate and
    its kernel buffers fill instead of the server's CPU.
    """

    __slots__ = ("message_rate", "byte_rate", "messages", "bytes", "burst_seconds", "stamp")

    def __init__(self, message_rate: float, byte_rate: float, now: float,
                 burst_seconds: float = MESSAGE_BURST_SECONDS):
        self.message_rate = message_rate
        self.byte_rate = byte_rate
        self.burst_seconds = burst_seconds
        self.messages = message_rate * burst_seconds
        self.bytes = byte_rate * burst_seconds
        self.stamp = now

    def charge(self, now: float, size: int) -> float:
        elapsed = now - self.stamp
        self.stamp = now
        wait = 0.0
        if self.message_rate:
            tokens = min(self.messages + elapsed * self.message_rate,
                         self.message_rate * self.burst_seconds) - 1.0
            self.messages = tokens
            if tokens < 0:
                wait = -tokens / self.message_rate
        if self.byte_rate:
            tokens = min(self.bytes + elapsed * self.byte_rate,
                         self.byte_rate * self.burst_seconds) - size
            self.bytes = tokens
            if tokens < 0:
                wait = max(wait, -tokens / self.byte_rate)
        return wait


def subnet_of(host) -> "str | None":
    """The /24 (IPv4) or /64 (IPv6) an address belongs to, as a short key.

    One party usually holds a whole /24 or /64 at least, so per-subnet
    bounds catch an attacker who spreads over the addresses of one network.
    """
    if not isinstance(host, str):
        return None
    if ":" not in host:
        head, dot, _ = host.rpartition(".")
        return head if dot else host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return subnet_of(str(address.ipv4_mapped))
    return address.packed[:8].hex()


class PendingLogins:
    """Connections that have not logged in yet: counted per address, per subnet, in all.

    ``admit(host, connection)`` returns None and counts the connection, or
    the name of the limit that refuses it (``pending_per_address``,
    ``pending_per_subnet``, ``pending_total``); ``release(host, connection)``
    undoes an admitted connection.  When the total is reached, ``evictable``
    names the connection to sacrifice for a newcomer: the oldest whose
    ``evictable`` attribute is true (the login protocol: still waiting for
    a hello or a login, not being checked).  So idle connections cannot hold
    the gate shut: each newcomer pushes out the longest-waiting idler.
    Addresses and subnets with no pending connection take no memory.
    """

    def __init__(self, max_total: int = DEFAULT_MAX_PENDING,
                 max_per_address: int = DEFAULT_MAX_PENDING_PER_ADDRESS,
                 max_per_subnet: int = DEFAULT_MAX_PENDING_PER_SUBNET):
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.max_per_subnet = max_per_subnet
        self.total = 0
        self.by_host = {}
        self.by_subnet = {}
        # Admitted connections, oldest first (only those passed to admit).
        self.connections = OrderedDict()

    def admit(self, host, connection=None) -> "str | None":
        count = self.by_host.get(host, 0)
        if count >= self.max_per_address:
            return "pending_per_address"
        subnet = subnet_of(host)
        in_subnet = self.by_subnet.get(subnet, 0)
        if in_subnet >= self.max_per_subnet:
            return "pending_per_subnet"
        if self.total >= self.max_total:
            return "pending_total"
        self.by_host[host] = count + 1
        self.by_subnet[subnet] = in_subnet + 1
        self.total += 1
        if connection is not None:
            self.connections[connection] = None
        return None

    def evictable(self):
        """The oldest admitted connection that may be pushed out, or None."""
        for connection in self.connections:
            if connection.evictable:
                return connection
        return None

    def release(self, host, connection=None) -> None:
        count = self.by_host.get(host, 0)
        if count <= 0:
            return
        if connection is not None:
            self.connections.pop(connection, None)
        self.total -= 1
        if count == 1:
            del self.by_host[host]
        else:
            self.by_host[host] = count - 1
        subnet = subnet_of(host)
        in_subnet = self.by_subnet.get(subnet, 0)
        if in_subnet <= 1:
            self.by_subnet.pop(subnet, None)
        else:
            self.by_subnet[subnet] = in_subnet - 1


class HelloLimiter:
    """Hellos (each costs the server three X25519 operations) per address and per subnet.

    Token buckets in two bounded LRU tables, checked before any public-key
    work: ``allow(host, now)`` is None, or the name of the limit that refuses
    (``hello_rate``, ``hello_rate_subnet``).  A table that overflows forgets
    its least recently used bucket (which then starts full again): memory
    stays bounded, and an attacker needs many subnets to gain from it.
    """

    def __init__(self, rate: float = DEFAULT_HELLO_RATE, burst: "float | None" = None,
                 subnet_rate: float = DEFAULT_HELLO_RATE_PER_SUBNET,
                 subnet_burst: "float | None" = None, size: int = DEFAULT_ATTEMPT_TABLE_SIZE):
        self.rate = rate
        self.burst = burst if burst is not None else DEFAULT_HELLO_BURST
        self.subnet_rate = subnet_rate
        self.subnet_burst = subnet_burst if subnet_burst is not None else DEFAULT_HELLO_BURST_PER_SUBNET
        self.size = size
        self.by_host = OrderedDict()
        self.by_subnet = OrderedDict()

    def _bucket(self, table, key, rate, burst, now):
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(rate, burst, now)
            if len(table) > self.size:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return bucket

    def allow(self, host, now: float) -> "str | None":
        # The address's own bucket first: a sender over its own rate spends
        # nothing of its subnet's budget.
        if self.rate and not self._bucket(self.by_host, host, self.rate, self.burst, now).take(now):
            return "hello_rate"
        if self.subnet_rate and not self._bucket(self.by_subnet, subnet_of(host), self.subnet_rate,
                                                 self.subnet_burst, now).take(now):
            return "hello_rate_subnet"
        return None


# Most distinct user names one address's failure record tells apart; failures
# for further names still count, but no success forgives them.
USERS_PER_ADDRESS = 16


@attrs.define
class _Failures:
    count: int
    last: float
    blocked_until: float
    # Failures per target user name (at most USERS_PER_ADDRESS of them).
    by_user: dict = attrs.Factory(dict)


class LoginAttempts:
    """Failed logins per address, with exponential backoff; bounded and expiring.

    The rule (README.md "Limits", docs/protocol.md): after ``free`` failed
    logins from an address (N, ``--max-login-failures``), its next attempt
    gets ``TOO_MANY_ATTEMPTS`` until ``backoff`` seconds have passed since
    the Nth failure; each further failure waits twice as long as the one
    before, at most ``backoff_max``.  With N=5 and a 1 s backoff: failures
    1-4 cost nothing, the 5th makes the address wait 1 s (an attempt within
    that second gets 429, unchecked), the 6th 2 s, the 7th 4 s, and so on.
    ``free`` 0 counts as 1.

    A successful login forgives only the failures for the user who logged in
    (so logging in to one's own account does not reset the backoff for
    guessing another's); an address with no failures left is forgotten, as
    is one ``expiry`` seconds without a failure.  At most ``size`` addresses
    are remembered: the least recently failed is forgotten first, so an
    attacker with many addresses can only make the table forget, never grow.
    """

    def __init__(self, free: int = DEFAULT_MAX_LOGIN_FAILURES,
                 backoff: float = DEFAULT_LOGIN_BACKOFF,
                 backoff_max: float = DEFAULT_LOGIN_BACKOFF_MAX,
                 size: int = DEFAULT_ATTEMPT_TABLE_SIZE,
                 expiry: "float | None" = None):
        self.free = max(free, 1)
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

    def failed(self, host, now: float, user: "str | None" = None) -> None:
        """Count a failed login from ``host`` (for ``user``, when known)."""
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
        if user is not None and (user in entry.by_user or len(entry.by_user) < USERS_PER_ADDRESS):
            entry.by_user[user] = entry.by_user.get(user, 0) + 1
        over = entry.count - self.free
        if over >= 0:
            delay = self.backoff * 2.0 ** min(over, 62)
            entry.blocked_until = now + min(delay, self.backoff_max)

    def succeeded(self, host, user: "str | None" = None) -> None:
        """``user`` logged in from ``host``: forgive that user's failures only.

        Without a user (embedding code), forget the address altogether.
        """
        entry = self.table.get(host)
        if entry is None:
            return
        if user is None:
            del self.table[host]
            return
        entry.count -= entry.by_user.pop(user, 0)
        if entry.count <= 0:
            del self.table[host]
        elif entry.count < self.free:
            entry.blocked_until = min(entry.blocked_until, entry.last)


@attrs.define
class Limits:
    """The TCP-side limits a LoginFactory enforces (the UDP rate is the registry's)."""

    pending: PendingLogins = attrs.Factory(PendingLogins)
    attempts: LoginAttempts = attrs.Factory(LoginAttempts)
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER
    # Seconds a new connection has to send its hello (the whole login has login_timeout).
    hello_timeout: float = DEFAULT_HELLO_TIMEOUT
    hellos: "HelloLimiter | None" = attrs.Factory(HelloLimiter)
    # TCP messages and bytes per second a logged-in session may send (0: no limit).
    message_rate: float = DEFAULT_MESSAGE_RATE
    message_bytes_rate: float = DEFAULT_MESSAGE_BYTES_RATE
