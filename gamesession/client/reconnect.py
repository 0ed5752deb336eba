"""How a GameClient comes back after its control connection dropped.

``Backoff`` gives the delays between attempts: doubling from ``initial`` to
``maximum``, each drawn at random from its upper half ("equal jitter"), so
that the clients a server lost at once do not all come back in the same
instant.  ``reconnect`` runs the attempts: resume while the client holds a
ticket, fall back to a normal login when the server refuses the resume for a
reason that allows one and the client has credentials, stop for good when the
session ended for good (logout, kick, replace, shutdown), and give up once the
resume grace has passed since the connection was lost.
"""

import random

from twisted.internet import defer, error, task
from twisted.logger import Logger

from gamesession.protocol.clientcore import LoginFailed, ResumeRefused
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.protocol.wire import ErrorCode, ProtocolError

DEFAULT_INITIAL = 0.05
DEFAULT_MAXIMUM = 2.0
# Attempts of a fallback login (no grace bounds it) before giving up.
MAX_LOGIN_RETRIES = 8

log = Logger()

# Failures of one attempt that are worth another: the network, not the server's answer.
RETRYABLE = (error.ConnectError, error.ConnectionClosed, error.ConnectionLost,
             defer.TimeoutError, error.TimeoutError, error.DNSLookupError)


class Backoff:
    """Bounded, jittered, doubling delays: the n-th is in [d/2, d], d = min(maximum, initial * 2**n)."""

    def __init__(self, initial: float = DEFAULT_INITIAL, maximum: float = DEFAULT_MAXIMUM,
                 random_fraction=random.random):
        self.initial = initial
        self.maximum = maximum
        self.random_fraction = random_fraction
        self.attempts = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        return ceiling * (0.5 + 0.5 * self.random_fraction())


async def reconnect(client, reason: str) -> None:
    """Bring ``client`` back after its control connection dropped; ends it if that fails.

    Fires the client's ``on_reconnecting(reason)`` first, then
    ``on_reconnected(resumed)`` (True: the same session resumed; False: a new
    login) or, on giving up, ``on_resume_failed(reason)`` before it closes.
    """
    reactor = client.reactor
    ticket = client.core.ticket
    deadline = reactor.seconds() + ticket.grace
    backoff = Backoff(client.reconnect_initial, client.reconnect_maximum)
    resume_session = True
    client._emit("on_reconnecting", reason)
    log.info("control connection lost ({reason}); resuming for up to {grace:g}s",
             reason=reason, grace=ticket.grace)
    while client.end_reason is None:
        remaining = deadline - reactor.seconds()
        if resume_session and remaining <= 0:
            return client._give_up("disconnected", "the resume grace ran out")
        try:
            if client.before_reconnect is not None:  # e.g. knock again: a grant may have ended
                await defer.maybeDeferred(client.before_reconnect)
            await client._open_control(resume_session, max(0.5, min(client.timeout, remaining)))
        except ResumeRefused as refused:
            if refused.final:
                return client._give_up(refused.ended, str(refused))
            if not client.fallback_login:
                return client._give_up("disconnected", str(refused))
            log.info("resume refused ({refused}); logging in again", refused=refused)
            resume_session = False
            continue
        except (LoginFailed, ServerKeyMismatch, ProtocolError) as e:
            if getattr(e, "code", None) != ErrorCode.TOO_MANY_ATTEMPTS:
                return client._give_up("error: {}".format(e), str(e))
            # 429: many clients behind one address came back at once (a server
            # restart made their tickets unknown): wait as for a network error.
            failure = e
        except RETRYABLE as e:
            failure = e
        else:
            failure = None
        if failure is not None:
            delay = backoff.next()
            log.debug("reconnect attempt failed ({error}); next in {delay:.2f}s",
                      error=failure, delay=delay)
            if resume_session and reactor.seconds() + delay >= deadline:
                return client._give_up("disconnected", "could not reconnect: {}".format(failure))
            if not resume_session and backoff.attempts > MAX_LOGIN_RETRIES:
                return client._give_up("disconnected", "could not log in again: {}".format(failure))
            await task.deferLater(reactor, delay, lambda: None)
            continue
        if client.end_reason is not None:  # ended meanwhile (UDP DISCONNECT, timeout)
            client._abort()
            return
        if resume_session:
            client.resumed += 1
        else:
            client.relogins += 1
        client._reconnected(resume_session)
        return
