"""Session resume: the proof, the message forms and the codes, sans-I/O.

A logged-in client holds a *resume ticket* from its welcome: a ``resume_id``
(16 random bytes, a lookup handle, not a secret) and a ``resume_secret`` (32
random bytes, only ever inside the sealed channel).  After its control
connection drops it runs a fresh handshake (hello/challenge: fresh ephemeral
keys, so fresh TCP and UDP keys and forward secrecy) and, instead of the
sealed ``login``, sends the sealed ``resume``:

    proof = BLAKE2b-256(key = resume_secret,
                        "gamesession v1 resume" || ce.pub || se.pub || ss.pub)

``ce.pub`` and ``se.pub`` are fresh to this handshake, so a recorded resume
proves nothing on another connection (and its sealed frame does not even
open there).  The server answers ``resumed`` with a new token, a new ticket
and the session's UDP channel under this handshake's keys; each ticket is
single-use.  See docs/protocol.md, "Session resume".
"""

import hashlib
import hmac

import attrs

from gamesession.protocol import wire
from gamesession.protocol.wire import ErrorCode, ProtocolError

RESUME_LABEL = b"gamesession v1 resume"
RESUME_ID_SIZE = 16
RESUME_SECRET_SIZE = 32
PROOF_SIZE = 32
DEFAULT_RESUME_GRACE = 20.0

# Why a resume is refused (error 410, member ``refused``).  ``ended`` goes
# with the reason the session ended for when it ended for good.
REFUSED_UNKNOWN = "unknown"  # no such ticket (or the server forgot it)
REFUSED_EXPIRED = "expired"  # the grace ran out before the client came back
REFUSED_USED = "used"  # this ticket already resumed the session once
REFUSED_ENDED = "ended"  # the session ended: logout, kicked, replaced, shutdown, timeout
REFUSED_OFF = "off"  # the server runs --resume-grace 0

#: Session end reasons after which a client must not resume or log in again by itself.
FINAL_REASONS = frozenset(["logout", "kicked", "replaced", "shutdown"])


def proof(resume_secret: bytes, client_ephemeral: bytes, server_ephemeral: bytes,
          server_static: bytes) -> bytes:
    """The resume proof of one handshake: keyed BLAKE2b-256 over its public keys."""
    if len(resume_secret) != RESUME_SECRET_SIZE:
        raise ValueError("a resume secret is {} bytes".format(RESUME_SECRET_SIZE))
    return hashlib.blake2b(RESUME_LABEL + client_ephemeral + server_ephemeral + server_static,
                           digest_size=PROOF_SIZE, key=resume_secret).digest()


def proof_matches(expected: bytes, presented: bytes) -> bool:
    """Constant-time comparison of two proofs."""
    return hmac.compare_digest(expected, presented)


@attrs.frozen(repr=False)
class Ticket:
    """What a client keeps to resume its session: never logged, never shown."""

    resume_id: bytes
    secret: bytes
    grace: float

    def __repr__(self):
        return "<Ticket {} grace={:g}>".format(self.resume_id.hex(), self.grace)


def ticket_fields(ticket: "Ticket | None") -> dict:
    """The welcome/resumed members that carry a ticket (none when resume is off)."""
    if ticket is None:
        return {}
    return {
        "resume_id": wire.b64(ticket.resume_id),
        "resume_secret": wire.b64(ticket.secret),
        "resume_grace": ticket.grace,
    }


def parse_ticket(message: dict) -> "Ticket | None":
    """The ticket in a welcome or resumed message; None when the server gave none."""
    if "resume_id" not in message:
        return None
    grace = message.get("resume_grace")
    if type(grace) not in (int, float) or not 0 < grace <= 86400:
        raise ProtocolError(ErrorCode.BAD_FIELD, "resume_grace must be a positive number of seconds")
    return Ticket(
        wire.bytes_field(message, "resume_id", size=RESUME_ID_SIZE),
        wire.bytes_field(message, "resume_secret", size=RESUME_SECRET_SIZE),
        float(grace),
    )


def resume_message(resume_id: bytes, proof_bytes: bytes) -> dict:
    """The sealed ``resume`` request (instead of ``login``)."""
    return {"type": "resume", "resume_id": wire.b64(resume_id), "proof": wire.b64(proof_bytes)}


def parse_resume(message: dict) -> "tuple[bytes, bytes]":
    """(resume_id, proof) of a ``resume`` request, else ProtocolError(BAD_FIELD)."""
    return (wire.bytes_field(message, "resume_id", size=RESUME_ID_SIZE),
            wire.bytes_field(message, "proof", size=PROOF_SIZE))


def refusal(refused: str, ended: "str | None" = None) -> dict:
    """The ``error`` 410 that refuses a resume; ``ended`` says why a session ended for good."""
    reasons = {
        REFUSED_UNKNOWN: "no session to resume",
        REFUSED_EXPIRED: "the session ended: its resume grace ran out",
        REFUSED_USED: "this resume ticket was already used",
        REFUSED_ENDED: "the session ended ({})".format(ended),
        REFUSED_OFF: "this server does not resume sessions",
    }
    message = wire.error(ErrorCode.RESUME_REFUSED, reasons[refused])
    message["refused"] = refused
    if ended is not None:
        message["ended"] = ended
    return message
