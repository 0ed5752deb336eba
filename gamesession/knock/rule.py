"""Port knocking without I/O: sequences, per-address progress, grants, MACs.

Everything here is plain data and arithmetic.  Time comes in as ``now``
(float seconds) on every call, so the same code runs under a real reactor,
under ``task.Clock`` in tests, and in the client.  ``gamesession.knock.listeners``
moves datagrams to a :class:`Knocker`; the login protocol asks a
:class:`KnockGate` whether a peer may connect.  The exact rules are written
down in docs/knocking.md; the tests check that document's test vector.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import ipaddress
import os
import random
import struct
from typing import Callable, Iterable, Optional, Sequence, Tuple, TypeVar

import attrs
import nacl.encoding
import nacl.hash
import nacl.utils

from gamesession.files import write_atomic

RANDOM_LOW = 1025
RANDOM_HIGH = 2024
RANDOM_MIN_COUNT = 10
RANDOM_MAX_COUNT = 100
MAX_SEQUENCE = 255  # the position travels in one byte

DEFAULT_WINDOW = 10.0
DEFAULT_GRANT = 30.0
DEFAULT_SKEW = 30.0
# How far in the future a knock may be dated (clocks ahead of the server's).
DEFAULT_FUTURE_SKEW = 5.0
# Nonces one sender may hold in the replay cache: at least 4 sequences' worth.
DEFAULT_NONCES_PER_HOST = 16
DEFAULT_MAX_TRACKED = 65536

SECRET_BYTES = 32
NONCE_BYTES = 16
MAC_BYTES = 32
VERSION = 1
CONTEXT = b"gamesession-knock v1"
HEADER = struct.Struct("!BBQ16s")  # version, position, timestamp, nonce
AUTH_KNOCK_BYTES = HEADER.size + MAC_BYTES  # 58
REPLY = struct.Struct("!H")
MAX_SERVER_ID = 64

Ports = Tuple[int, ...]
T = TypeVar("T")


class KnockError(ValueError):
    """A knock sequence, sequence file or secret that cannot be used."""


# -- sequences ---------------------------------------------------------------


def parse_sequence(text: str) -> Ports:
    """Parse ``"7101,7102,7103"`` (commas and/or whitespace) into ports.

    Ports must be 1-65535, unique, and at most :data:`MAX_SEQUENCE` long:
    a repeated port would make "duplicate" and "next step" indistinguishable.
    """
    parts = [p for p in text.replace(",", " ").split()]
    if not parts:
        raise KnockError("empty knock sequence: give ports like 7101,7102,7103")
    ports = []
    for part in parts:
        try:
            port = int(part, 10)
        except ValueError:
            raise KnockError(
                f"knock port {part!r} is not a number: give ports like 7101,7102,7103"
            ) from None
        if not 1 <= port <= 65535:
            raise KnockError(f"knock port {port} is outside 1-65535")
        ports.append(port)
    if len(set(ports)) != len(ports):
        dupes = sorted({p for p in ports if ports.count(p) > 1})
        raise KnockError(
            f"knock ports must be unique; repeated: {','.join(map(str, dupes))}"
        )
    if len(ports) > MAX_SEQUENCE:
        raise KnockError(
            f"knock sequence has {len(ports)} ports; at most {MAX_SEQUENCE} are allowed"
        )
    return tuple(ports)


def _parse_file(path: str, what: str, parse: Callable[[str], T]) -> T:
    """``parse`` the text of a small ASCII file; errors name the file."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError as e:
        raise KnockError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        return parse(text)
    except KnockError as e:
        raise KnockError(f"{what} {path}: {e}") from None


def read_sequence_file(path: str) -> Ports:
    """Read a sequence written by :func:`write_sequence_file` (or by hand)."""
    return _parse_file(path, "knock file", parse_sequence)


def parse_ports(text: str) -> Ports:
    """Parse a ``--knock`` value: ``P1,P2,...`` or ``@FILE``."""
    if text.startswith("@"):
        return read_sequence_file(text[1:])
    return parse_sequence(text)


def write_sequence_file(path: str, ports: Sequence[int]) -> None:
    """Write ports comma-separated to ``path`` (mode 0600), atomically.

    Never through a symlink (``files.UnsafeFile``, an OSError).
    """
    write_atomic(path, (",".join(map(str, ports)) + "\n").encode("ascii"), 0o600)


def random_sequence(count: int, rng: random.Random) -> Ports:
    """``count`` unique ports from 1025-2024 in random order (seeds/002)."""
    if not RANDOM_MIN_COUNT <= count <= RANDOM_MAX_COUNT:
        raise KnockError(
            f"--knock-random takes {RANDOM_MIN_COUNT} to {RANDOM_MAX_COUNT} ports, not {count}"
        )
    return tuple(rng.sample(range(RANDOM_LOW, RANDOM_HIGH + 1), count))


def is_monotonic(ports: Sequence[int]) -> bool:
    """True for sorted sequences, which a plain UDP port sweep knocks for free."""
    if len(ports) < 2:
        return False
    pairs = list(zip(ports, ports[1:]))
    return all(a < b for a, b in pairs) or all(a > b for a, b in pairs)


# -- secrets -----------------------------------------------------------------


def generate_secret() -> bytes:
    return nacl.utils.random(SECRET_BYTES)


def format_secret(secret: bytes) -> str:
    return secret.hex() + "\n"


def parse_secret(text: str) -> bytes:
    """Accept 32 bytes written as 64 hex digits or as base64."""
    text = text.strip()
    secret = None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        try:
            secret = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
    if secret is None or len(secret) != SECRET_BYTES:
        raise KnockError(
            f"a knock secret is {SECRET_BYTES} bytes written as 64 hex digits or base64;"
            " create one with `gamesession knock-secret --file PATH`"
        )
    return secret


def load_secret(path: str) -> bytes:
    return _parse_file(path, "knock secret", parse_secret)


def write_secret_file(path: str, secret: Optional[bytes] = None) -> bytes:
    """Create a secret file (mode 0600, refuses to overwrite) and return the key."""
    if secret is None:
        secret = generate_secret()
    try:
        write_atomic(path, format_secret(secret).encode("ascii"), 0o600, replace=False)
    except FileExistsError:
        raise KnockError(f"{path} exists; remove it first to make a new secret") from None
    except OSError as e:
        raise KnockError(f"cannot write knock secret {path}: {e.strerror or e}") from None
    return secret


# -- authenticated knocks ----------------------------------------------------


def canonical_host(host: str) -> str:
    """One spelling per address, so UDP and dual-stack TCP peers match.

    ``::ffff:192.0.2.1`` (an IPv4 peer on an IPv6 socket) becomes
    ``192.0.2.1``; IPv6 addresses get their compressed form.
    """
    if ":" not in host:
        return host
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


# host -> the MAC's address bytes (length-prefixed), so a flood from one
# sender parses its address once; cleared when it reaches the bound.
_ADDRESS_BYTES: dict = {}
_ADDRESS_CACHE_SIZE = 4096


def _packed(host: str) -> bytes:
    """Length byte + packed address of ``host``, as the MAC covers it."""
    packed = _ADDRESS_BYTES.get(host)
    if packed is None:
        try:
            raw = ipaddress.ip_address(canonical_host(host)).packed
        except ValueError:
            raise KnockError(f"authenticated knocks need an IP address, not {host!r}") from None
        packed = bytes([len(raw)]) + raw
        if len(_ADDRESS_BYTES) >= _ADDRESS_CACHE_SIZE:
            _ADDRESS_BYTES.clear()
        _ADDRESS_BYTES[host] = packed
    return packed


_PORT = struct.Struct("!H").pack


def server_binding(server_id: bytes) -> bytes:
    """What a server id adds to the MAC input after the context (nothing when empty).

    A zero byte (an address length is 4 or 16, never 0), the id's length,
    the id: a knock made for one server id never verifies for another.
    """
    if not server_id:
        return b""
    if len(server_id) > MAX_SERVER_ID:
        raise KnockError(f"a knock server id is at most {MAX_SERVER_ID} bytes")
    return b"\x00" + bytes([len(server_id)]) + server_id


def knock_mac(secret: bytes, host: str, port: int, header: bytes, server_id: bytes = b"") -> bytes:
    """BLAKE2b-256 keyed with the secret, over context, [server id,] address, port, header.

    hashlib's BLAKE2b: the same function as libsodium's, a tenth of the cost
    of PyNaCl's wrapper per call (it is on the reject path of every knock).
    """
    msg = CONTEXT + server_binding(server_id) + _packed(host) + _PORT(port) + header
    return hashlib.blake2b(msg, digest_size=MAC_BYTES, key=secret).digest()


def encode_knock(
    secret: bytes, host: str, port: int, position: int, timestamp: int, nonce: bytes,
    server_id: bytes = b"",
) -> bytes:
    """The datagram a client at ``host`` sends to ``port`` (see docs/knocking.md)."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    header = HEADER.pack(VERSION, position, timestamp, nonce)
    return header + knock_mac(secret, host, port, header, server_id)


@attrs.frozen
class AuthKnock:
    position: int
    timestamp: int
    nonce: bytes


def verify_knock(secret: bytes, host: str, port: int, data: bytes,
                 server_id: bytes = b"") -> Optional[AuthKnock]:
    """The decoded knock if its MAC is good for this sender and port, else None.

    Only the format and the MAC are checked: freshness and replay are state,
    kept by :class:`Knocker`.
    """
    if len(data) != AUTH_KNOCK_BYTES:
        return None
    header, mac = data[: HEADER.size], data[HEADER.size :]
    if not hmac.compare_digest(mac, knock_mac(secret, host, port, header, server_id)):
        return None
    version, position, timestamp, nonce = HEADER.unpack(header)
    if version != VERSION:
        return None
    return AuthKnock(position, timestamp, nonce)


class ReplayCache:
    """Nonces of accepted knocks, each kept until its knock goes stale; fair per sender.

    A knock is bound to its sender's address by the MAC, so a nonce can
    only ever be replayed from the address that sent it.  That makes the
    floors per sender: when a sender holds ``per_host`` nonces, its own
    oldest is dropped and only *its* floor rises to that nonce's expiry.
    Knocks whose expiry is not after their sender's floor (or the global
    one) are refused as stale, so a dropped nonce can never be replayed.
    One sender knocking as fast as it likes (even with the secret) only
    makes its own slow knocks stale, never anyone else's.

    When the whole cache is full (``max_entries``: that takes more than
    ``max_entries / per_host`` senders) the oldest nonce of all is dropped
    and its sender's floor raised.  The floors table is bounded too: a floor
    it must forget is folded into the global floor (safe: it only refuses
    more).  Floors in the past are forgotten: those knocks are stale anyway.
    """

    def __init__(self, max_entries: int, per_host: Optional[int] = None) -> None:
        self.max_entries = max_entries
        self.per_host = max(1, per_host if per_host is not None else max_entries)
        self.floor = float("-inf")
        # nonce -> (expires, host), oldest first.
        self._expires: collections.OrderedDict[bytes, Tuple[float, str]] = collections.OrderedDict()
        # host -> its nonces, oldest first.
        self._by_host: dict = {}
        # host -> the expiry below which its knocks are stale (oldest raised first).
        self._floors: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._expires)

    def fresh(self, expires: float, host: str = "") -> bool:
        return expires > self.floor and expires > self._floors.get(host, float("-inf"))

    def seen(self, nonce: bytes) -> bool:
        return nonce in self._expires

    def held_by(self, host: str) -> int:
        return len(self._by_host.get(host, ()))

    def _drop(self, nonce: bytes) -> None:
        expires, host = self._expires.pop(nonce)
        mine = self._by_host[host]
        del mine[nonce]
        if not mine:
            del self._by_host[host]
        if expires > self._floors.get(host, float("-inf")):
            self._floors[host] = expires
            self._floors.move_to_end(host)
            while len(self._floors) > self.max_entries:
                _, old = self._floors.popitem(last=False)
                self.floor = max(self.floor, old)

    def add(self, nonce: bytes, expires: float, host: str = "") -> bool:
        """Remember ``nonce`` sent by ``host``; True if that evicted an entry to stay bounded."""
        evicted = False
        mine = self._by_host.get(host)
        if mine is not None and len(mine) >= self.per_host:
            self._drop(next(iter(mine)))
            evicted = True
        elif len(self._expires) >= self.max_entries:
            self._drop(next(iter(self._expires)))
            evicted = True
        self._expires[nonce] = (expires, host)
        self._by_host.setdefault(host, collections.OrderedDict())[nonce] = None
        return evicted

    def expire(self, now: float) -> None:
        while self._expires:
            nonce, (expires, host) = next(iter(self._expires.items()))
            if expires >= now:
                break
            del self._expires[nonce]
            mine = self._by_host[host]
            del mine[nonce]
            if not mine:
                del self._by_host[host]
        for host in [h for h, floor in self._floors.items() if floor < now]:
            del self._floors[host]


# -- progress and grants -----------------------------------------------------


@attrs.define
class _Progress:
    next_index: int
    started_at: float


class ProgressTracker:
    """Per-address position in the sequence (the rule is in docs/knocking.md).

    A knock on the expected port advances; a repeat of the last accepted
    port is ignored (UDP duplicate); a knock on the first port starts or
    restarts; a knock on a sequence port that is none of these drops the
    progress; ports outside the sequence are ignored.  The whole sequence
    must be completed within ``window`` seconds of the (re)start.
    """

    def __init__(
        self,
        sequence: Sequence[int],
        window: float,
        max_tracked: int,
        stats: collections.Counter,
    ) -> None:
        self.sequence = tuple(sequence)
        self.window = window
        self.max_tracked = max_tracked
        self.stats = stats
        self._index = {port: i for i, port in enumerate(self.sequence)}
        # Ordered by (re)start time, so expiry and eviction pop from the front.
        self._table: collections.OrderedDict[str, _Progress] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def position(self, host: str) -> int:
        """How many ports of the sequence ``host`` has knocked (0 if none)."""
        entry = self._table.get(host)
        return entry.next_index if entry is not None else 0

    def index_of(self, port: int) -> Optional[int]:
        return self._index.get(port)

    def knock(self, host: str, port: int, now: float) -> bool:
        """Record a knock; True when it completes the sequence."""
        index = self._index.get(port)
        entry = self._table.get(host)
        if entry is not None and now - entry.started_at > self.window:
            del self._table[host]
            self.stats["progress_expired"] += 1
            entry = None
        if index is None:
            self.stats["stray"] += 1
            return False
        if entry is None:
            if index != 0:
                self.stats["stray"] += 1
                return False
            return self._start(host, now)
        if index == entry.next_index:
            entry.next_index += 1
            self.stats["advanced"] += 1
            if entry.next_index == len(self.sequence):
                del self._table[host]
                return True
            return False
        if index == entry.next_index - 1:
            self.stats["duplicate"] += 1
            return False
        if index == 0:
            del self._table[host]
            self.stats["restarted"] += 1
            return self._start(host, now)
        del self._table[host]
        self.stats["out_of_order"] += 1
        return False

    def _start(self, host: str, now: float) -> bool:
        self.stats["started"] += 1
        if len(self.sequence) == 1:
            return True
        if len(self._table) >= self.max_tracked:
            self._table.popitem(last=False)
            self.stats["evicted"] += 1
        self._table[host] = _Progress(next_index=1, started_at=now)
        return False

    def expire(self, now: float) -> None:
        while self._table:
            host, entry = next(iter(self._table.items()))
            if now - entry.started_at <= self.window:
                break
            del self._table[host]
            self.stats["progress_expired"] += 1


class Grants:
    """Addresses allowed to open login connections, each until its expiry."""

    def __init__(self, duration: float, max_grants: int, stats: collections.Counter) -> None:
        self.duration = duration
        self.max_grants = max_grants
        self.stats = stats
        # Same duration for all, refreshed grants move to the end: ordered by expiry.
        self._expires: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._expires)

    def grant(self, host: str, now: float) -> None:
        if host in self._expires:
            self._expires.move_to_end(host)
        elif len(self._expires) >= self.max_grants:
            self._expires.popitem(last=False)
            self.stats["grants_evicted"] += 1
        self._expires[host] = now + self.duration

    def allows(self, host: str, now: float) -> bool:
        expires = self._expires.get(host)
        if expires is None:
            return False
        if now >= expires:
            del self._expires[host]
            self.stats["grants_expired"] += 1
            return False
        return True

    def expire(self, now: float) -> None:
        while self._expires:
            host, expires = next(iter(self._expires.items()))
            if now < expires:
                break
            del self._expires[host]
            self.stats["grants_expired"] += 1


# -- the whole gate ----------------------------------------------------------


def encode_reply(login_port: int) -> bytes:
    return REPLY.pack(login_port)


def decode_reply(data: bytes) -> Optional[int]:
    if len(data) != REPLY.size:
        return None
    return REPLY.unpack(data)[0]


@attrs.frozen
class KnockResult:
    """What the I/O layer must do about one datagram."""

    granted: Optional[str] = None  # canonical host that just earned a grant
    reply: Optional[bytes] = None  # datagram to send back to the knock's source


_NOTHING = KnockResult()


class Knocker:
    """The knock gate's whole state: feed it datagrams, ask it about peers.

    ``stats`` is a Counter of everything that happened, for summaries and
    metrics.  All three tables (progress, grants, replay cache) are capped
    at ``max_tracked`` entries.
    """

    def __init__(
        self,
        sequence: Sequence[int],
        *,
        window: float = DEFAULT_WINDOW,
        grant: float = DEFAULT_GRANT,
        secret: Optional[bytes] = None,
        skew: float = DEFAULT_SKEW,
        future_skew: Optional[float] = None,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        reply_port: Optional[int] = None,
        per_host: Optional[int] = None,
        server_id: bytes = b"",
    ) -> None:
        if not sequence:
            raise KnockError("a knock sequence needs at least one port")
        if max_tracked < 1:
            raise KnockError("--knock-max-tracked must be at least 1")
        self.stats: collections.Counter = collections.Counter()
        self.sequence = tuple(sequence)
        self.secret = secret
        self.skew = skew
        # Knocks must be made for this server id (--knock-server-id); b"": unbound.
        self.server_id = server_id
        server_binding(server_id)  # refuses an id that is too long
        # Knocks dated in the future live up to skew + future_skew in the cache.
        self.future_skew = min(skew, DEFAULT_FUTURE_SKEW if future_skew is None else future_skew)
        self.reply_port = reply_port
        self.progress = ProgressTracker(self.sequence, window, max_tracked, self.stats)
        self.grants = Grants(grant, max_tracked, self.stats)
        if per_host is None:
            per_host = max(DEFAULT_NONCES_PER_HOST, 4 * len(self.sequence))
        self.replay = ReplayCache(max_tracked, per_host)

    @property
    def grant_seconds(self) -> float:
        return self.grants.duration

    def knock(self, host: str, port: int, data: bytes, now: float) -> KnockResult:
        host = canonical_host(host)
        self.stats["knocks"] += 1
        if self.secret is not None and not self._authentic(host, port, data, now):
            return _NOTHING
        if not self.progress.knock(host, port, now):
            return _NOTHING
        self.grants.grant(host, now)
        self.stats["grants"] += 1
        reply = None
        if self.reply_port is not None:
            candidate = encode_reply(self.reply_port)
            if len(candidate) <= len(data):
                reply = candidate
                self.stats["replies"] += 1
            else:
                self.stats["reply_withheld"] += 1
        return KnockResult(granted=host, reply=reply)

    def _authentic(self, host: str, port: int, data: bytes, now: float) -> bool:
        # Cheap checks first: size, version, position and time need no MAC.
        if len(data) != AUTH_KNOCK_BYTES or data[0] != VERSION:
            self.stats["bad_format"] += 1
            return False
        _, position, timestamp, _ = HEADER.unpack_from(data)
        if self.progress.index_of(port) != position:
            self.stats["wrong_position"] += 1
            return False
        expires = timestamp + self.skew
        if (now - timestamp > self.skew or timestamp - now > self.future_skew
                or not self.replay.fresh(expires, host)):
            self.stats["stale"] += 1
            return False
        knock = verify_knock(self.secret, host, port, data, self.server_id)
        if knock is None:
            self.stats["bad_mac"] += 1
            return False
        if self.replay.seen(knock.nonce):
            self.stats["replayed"] += 1
            return False
        # Only now, with the MAC checked, may the nonce take a cache slot.
        if self.replay.add(knock.nonce, expires, host):
            self.stats["replay_evicted"] += 1
        return True

    def allows(self, host: str, now: float) -> bool:
        """May ``host`` open a login connection now?  Counts the answer."""
        if self.grants.allows(canonical_host(host), now):
            self.stats["allowed_connections"] += 1
            return True
        self.stats["rejected_connections"] += 1
        return False

    def expire(self, now: float) -> None:
        self.progress.expire(now)
        self.grants.expire(now)
        self.replay.expire(now)


class KnockGate:
    """:class:`Knocker` bound to a clock: what the login protocol consults.

    ``allows(peer_host)`` is called in ``connectionMade``; on False the
    protocol aborts the connection before writing a byte (the rejection is
    already counted here).
    """

    def __init__(self, knocker: Knocker, clock) -> None:
        self.knocker = knocker
        self.clock = clock

    def allows(self, host: str) -> bool:
        return self.knocker.allows(host, self.clock.seconds())


def make_client_knocks(
    ports: Sequence[int],
    secret: Optional[bytes],
    host: str,
    now: float,
    nonce: Callable[[int], bytes] = os.urandom,
    server_id: bytes = b"",
) -> Iterable[Tuple[int, bytes]]:
    """(port, datagram) pairs a client at ``host`` sends, in order.

    Classic knocks are one zero byte, like the stock ``knock -u`` client.
    """
    for position, port in enumerate(ports):
        if secret is None:
            yield port, b"\x00"
        else:
            yield port, encode_knock(
                secret, host, port, position, int(now), nonce(NONCE_BYTES), server_id
            )
