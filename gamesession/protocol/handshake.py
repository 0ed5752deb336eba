"""Key schedule of a login: server authentication, forward secrecy, session keys.

Sans-I/O.  The client sends a fresh ephemeral Curve25519 key; the server
answers with its own fresh ephemeral key and a key confirmation.  Both derive

    es  = X25519(client_ephemeral, server_static)
    ee  = X25519(client_ephemeral, server_ephemeral)
    prk = BLAKE2b-256("gamesession v1" || es || ee || ce_pub || se_pub || ss_pub)
    key(label) = BLAKE2b-256(label, key=prk)

``es`` means only the holder of the pinned server key can derive the keys (no
man in the middle); ``ee`` means a later theft of that key does not open
recorded sessions (forward secrecy).  Every key is new for every login, so
per-direction counters starting at 0 never repeat a nonce under a key.
See docs/protocol.md, "Key schedule".
"""

import hashlib
import struct
import threading

import attrs
from nacl.bindings import crypto_scalarmult

try:  # PyNaCl >= 1.6: no zero-padding copies
    from nacl.bindings import crypto_secretbox_easy as crypto_secretbox
    from nacl.bindings import crypto_secretbox_open_easy as crypto_secretbox_open
except ImportError:  # pragma: no cover - same bytes on the wire either way
    from nacl.bindings import crypto_secretbox, crypto_secretbox_open
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as NaClRuntimeError
from nacl.public import PrivateKey

PROLOGUE = b"gamesession v1"
CONFIRM_PLAINTEXT = b""
MAX_COUNTER = 2**64 - 1


class HandshakeError(Exception):
    """The peer's handshake message cannot be used."""


class ServerKeyMismatch(HandshakeError):
    """The server could not prove it holds the pinned key."""


class BadBox(Exception):
    """A box did not open: wrong key, wrong counter or tampered bytes."""


KEY_SIZE = 32
TAG_SIZE = 16
# The 24-byte XSalsa20 nonce of a counter: 8 bytes little-endian, then zeros.
_nonce = struct.Struct("<Q16x").pack


def nonce(counter: int) -> bytes:
    """The 24-byte XSalsa20 nonce of a counter: 8 bytes little-endian, then zeros."""
    return _nonce(counter)


def _public_seal(key: bytes, counter: int, plaintext: bytes) -> bytes:
    return crypto_secretbox(plaintext, _nonce(counter), key)


def _public_open(key: bytes, counter: int, box: bytes) -> bytes:
    try:
        return crypto_secretbox_open(box, _nonce(counter), key)
    except (CryptoError, ValueError, TypeError, struct.error):
        raise BadBox()


try:
    # The same libsodium functions PyNaCl's bindings call, without the
    # wrapper's per-call checks, zeroed allocation and copies: the UDP hot
    # path seals and opens one box per packet (docs/benchmarks.md).
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib

    _seal_c = _lib.crypto_secretbox_easy
    _open_c = _lib.crypto_secretbox_open_easy
except (ImportError, AttributeError):  # pragma: no cover - other PyNaCl builds
    _ffi = None

if _ffi is not None:
    _SCRATCH_SIZE = 2048
    _unpack = _ffi.unpack
    _new = _ffi.new
    _scratch = threading.local()

    def _buffer(size: int):
        """A reusable output buffer of this thread (libsodium runs without the GIL)."""
        if size > _SCRATCH_SIZE:
            return _new("char[]", size)
        try:
            return _scratch.buffer
        except AttributeError:
            _scratch.buffer = _new("char[]", _SCRATCH_SIZE)
            return _scratch.buffer

    def seal(key: bytes, counter: int, plaintext: bytes) -> bytes:
        """secretbox(plaintext) under key at counter: 16-byte tag then ciphertext."""
        if len(key) != KEY_SIZE:
            raise ValueError("a secretbox key is 32 bytes")
        try:
            nonce_bytes = _nonce(counter)
        except struct.error:
            raise OverflowError("counter out of range")
        size = len(plaintext) + TAG_SIZE
        out = _buffer(size)
        if _seal_c(out, plaintext, len(plaintext), nonce_bytes, key) != 0:
            raise CryptoError("encryption failed")
        return _unpack(out, size)

    def open_box(key: bytes, counter: int, box: bytes) -> bytes:
        """The plaintext of a box sealed under key at counter, else BadBox."""
        try:
            size = len(box) - TAG_SIZE
            if size < 0 or len(key) != KEY_SIZE:
                raise BadBox()
            out = _buffer(size or 1)
            if _open_c(out, box, len(box), _nonce(counter), key) != 0:
                raise BadBox()
        except (TypeError, struct.error):
            raise BadBox()
        return _unpack(out, size)
else:  # pragma: no cover
    seal = _public_seal
    open_box = _public_open


def _hash(data: bytes, key: bytes = b"") -> bytes:
    # Keyed BLAKE2b-256: hashlib's is the same function as libsodium's
    # generichash (same bytes, see the test vectors) at a fraction of the
    # per-call cost of PyNaCl's checked wrapper; five calls per login.
    return hashlib.blake2b(data, digest_size=32, key=key).digest()


def _dh(private: bytes, public: bytes) -> bytes:
    try:
        return crypto_scalarmult(private, public)
    except (NaClRuntimeError, ValueError, TypeError):
        # libsodium refuses low-order points (all-zero shared secret).
        raise HandshakeError("unusable public key")


@attrs.frozen
class SessionKeys:
    """The four keys of one login, named by channel and direction."""

    tcp_c2s: bytes
    tcp_s2c: bytes
    udp_c2s: bytes
    udp_s2c: bytes


LABELS = ("tcp c2s", "tcp s2c", "udp c2s", "udp s2c")


def derive_keys(
    es: bytes, ee: bytes, client_ephemeral: bytes, server_ephemeral: bytes,
    server_static: bytes,
) -> SessionKeys:
    prk = _hash(PROLOGUE + es + ee + client_ephemeral + server_ephemeral + server_static)
    return SessionKeys(*(_hash(label.encode("ascii"), key=prk) for label in LABELS))


def confirmation(keys: SessionKeys) -> bytes:
    """The server's proof that it derived the keys: an empty box, tcp s2c, counter 0."""
    return seal(keys.tcp_s2c, 0, CONFIRM_PLAINTEXT)


class ClientHandshake:
    """The client's side: pins the server's static public key."""

    def __init__(self, server_static_public: bytes, ephemeral: "PrivateKey | None" = None):
        self.server_static = bytes(server_static_public)
        self.ephemeral = ephemeral if ephemeral is not None else PrivateKey.generate()
        self.ephemeral_public = bytes(self.ephemeral.public_key)

    def finish(self, server_ephemeral: bytes, confirm: bytes) -> SessionKeys:
        """Check the server's answer; raise ServerKeyMismatch unless it proves the key."""
        sk = bytes(self.ephemeral)
        try:
            es = _dh(sk, self.server_static)
            ee = _dh(sk, server_ephemeral)
        except HandshakeError:
            raise ServerKeyMismatch("server sent an unusable key")
        keys = derive_keys(es, ee, self.ephemeral_public, server_ephemeral, self.server_static)
        try:
            if open_box(keys.tcp_s2c, 0, confirm) != CONFIRM_PLAINTEXT:
                raise BadBox()
        except BadBox:
            raise ServerKeyMismatch("server key mismatch")
        return keys


@attrs.frozen
class ServerReply:
    server_ephemeral: bytes
    confirm: bytes
    keys: SessionKeys


def server_respond(
    static: PrivateKey, client_ephemeral: bytes, ephemeral: "PrivateKey | None" = None
) -> ServerReply:
    """The server's side of the handshake for one client hello."""
    if ephemeral is None:
        ephemeral = PrivateKey.generate()
    es = _dh(bytes(static), client_ephemeral)
    ee = _dh(bytes(ephemeral), client_ephemeral)
    se_pub = bytes(ephemeral.public_key)
    keys = derive_keys(es, ee, client_ephemeral, se_pub, bytes(static.public_key))
    return ServerReply(se_pub, confirmation(keys), keys)


class StreamCipher:
    """Seals or opens the in-order frames of one TCP direction.

    TCP delivers in order, so the counter is implicit: both ends count frames.
    The server's first sealed frame uses counter 1 (0 was the confirmation).
    """

    __slots__ = ("key", "counter")

    def __init__(self, key: bytes, counter: int = 0):
        self.key = key
        self.counter = counter

    def _next(self) -> int:
        counter = self.counter
        if counter >= MAX_COUNTER:
            raise BadBox()
        self.counter = counter + 1
        return counter

    def seal(self, plaintext: bytes) -> bytes:
        return seal(self.key, self._next(), plaintext)

    def open(self, box: bytes) -> bytes:
        return open_box(self.key, self._next(), box)
