"""The server's long-term Curve25519 key: file format and text encoding.

A key file holds the 32-byte private key as one line of standard base64.  The
public key is shown and pinned as standard base64 too (44 characters), so it
can be pasted into a game client's configuration.

Key files are written atomically and never through a symlink
(``files.write_atomic``), with mode 0600; like ssh, a key file that group or
others may access is refused when loaded.
"""

import base64
import binascii
import os

from nacl.public import PrivateKey, PublicKey

from gamesession.files import UnsafeFile, check_private, write_atomic

KEY_SIZE = 32


class KeyFileError(ValueError):
    """A key file or key text that cannot be used; the message says why."""


def encode_key(raw: bytes) -> str:
    """The 44-character base64 text of a 32-byte key."""
    return base64.b64encode(raw).decode("ascii")


def decode_key(text: str) -> bytes:
    """Decode a base64 key of exactly 32 bytes, or raise KeyFileError."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("not a base64 key: {!r}".format(text.strip()[:60]))
    if len(raw) != KEY_SIZE:
        raise KeyFileError(
            "a key is {} bytes, this one is {}".format(KEY_SIZE, len(raw))
        )
    return raw


def public_key_text(private: PrivateKey) -> str:
    """What ``gamesession pubkey`` prints: the public half, in base64."""
    return encode_key(bytes(private.public_key))


def write_private_key(path: str, private: PrivateKey, force: bool = False) -> None:
    """Write a key file with mode 0600, atomically; refuse to replace one unless forced.

    Never writes through a symlink at ``path`` (refused, even with force).
    """
    try:
        write_atomic(path, (encode_key(bytes(private)) + "\n").encode("ascii"), 0o600,
                     replace=force)
    except FileExistsError:
        raise KeyFileError(
            "{} exists; pass --force to replace it (clients pinned to its "
            "public key will no longer connect)".format(path)
        )
    except UnsafeFile as e:
        raise KeyFileError(str(e))
    except OSError as e:
        raise KeyFileError("cannot write key file {}: {}".format(path, e.strerror or e))


def _read_text(path: str, what: str, private: bool = False) -> str:
    try:
        with open(path) as f:
            if private:
                check_private(path, f.fileno(), what)
            return f.read()
    except UnsafeFile as e:
        raise KeyFileError(str(e))
    except OSError as e:
        raise KeyFileError("cannot read {} {}: {}".format(what, path, e.strerror))


def read_private_key(path: str) -> PrivateKey:
    """The key in ``path``; KeyFileError if unreadable, malformed, or readable by others."""
    text = _read_text(path, "key file", private=True)
    try:
        return PrivateKey(decode_key(text))
    except KeyFileError as e:
        raise KeyFileError("{}: {}".format(path, e))


def load_or_create_private_key(path: str) -> "tuple[PrivateKey, bool]":
    """Return (key, created): the key in path, made (mode 0600) if missing."""
    if os.path.lexists(path):
        return read_private_key(path), False
    key = PrivateKey.generate()
    try:
        write_private_key(path, key)
    except KeyFileError:
        # Another process created it between the check and the write.
        return read_private_key(path), False
    return key, True


def read_public_key(spec: str) -> PublicKey:
    """A pinned server key: base64 text, or @FILE holding it.

    The file is what ``gamesession pubkey`` prints.
    """
    text = _read_text(spec[1:], "public key file") if spec.startswith("@") else spec
    return PublicKey(decode_key(text))


def server_key_bytes(key) -> bytes:
    """The 32 raw bytes of a pinned server key given in any usual form.

    Accepts what ``gamesession pubkey`` prints (base64 text, as ``str`` or as
    ``bytes``), the 32 raw bytes, or a ``nacl.public.PublicKey``; anything
    else raises KeyFileError (a ValueError) saying what was expected.
    """
    if isinstance(key, PublicKey):
        return bytes(key)
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if len(raw) == KEY_SIZE:
            return raw
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFileError("a server key is {} raw bytes or its base64 text; got {} bytes"
                               .format(KEY_SIZE, len(raw)))
        return decode_key(text)
    if isinstance(key, str):
        return decode_key(key)
    raise KeyFileError("a server key is base64 text (what `gamesession pubkey` prints), "
                       "{} raw bytes or a PublicKey, not {}".format(KEY_SIZE, type(key).__name__))
