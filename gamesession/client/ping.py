"""``gamesession ping``: log in, send pings over UDP, print a summary.

The last line is ``N sent, M received, L% loss, rtt min/avg/max = a/b/c ms``,
then ``, K resumed`` when the control connection dropped and the session
resumed K times (the pings go on meanwhile: they travel over UDP).
Exit 0 when the login succeeded and at least one pong came back; otherwise
one line on stderr says what failed.
"""

import sys

from twisted.internet import defer, error, task

from gamesession.client.address import join_host_port, split_host_port
from gamesession.client.gameclient import FramingMismatch, GameClient
from gamesession.client.password import Password, login_with_password
from gamesession.protocol.clientcore import LoginFailed
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.knock.client import DEFAULT_SETTLE as KNOCK_SETTLE
from gamesession.knock.client import knock, knock_and_connect
from gamesession.protocol.wire import ErrorCode, ProtocolError


def describe_failure(exc, server: str, framing: str = "int16") -> str:
    """One clear line for each way a login can fail."""
    other = "line" if framing == "int16" else "int16"
    if isinstance(exc, ServerKeyMismatch):
        return "server key mismatch: {} did not prove it holds the pinned key".format(server)
    if isinstance(exc, FramingMismatch):
        return "{}: {} (try --framing {})".format(server, exc.args[0], other)
    if isinstance(exc, LoginFailed):
        if exc.code == ErrorCode.AUTH_FAILED:
            return "auth failed: wrong user name or password"
        return "login refused by {}: {}".format(server, exc)
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused by {}".format(server)
    if isinstance(exc, (defer.TimeoutError, error.TimeoutError)):
        return ("timed out connecting or logging in to {} (a server whose --framing is not"
                " {} looks like this too)".format(server, framing))
    if isinstance(exc, error.DNSLookupError):
        return "cannot resolve {}".format(server)
    if isinstance(exc, (error.ConnectionClosed, error.ConnectionLost, error.ConnectError)):
        return ("{}: {} (if the server uses port knocking, pass --knock; if its --framing is"
                " not {}, pass --framing {})".format(
                    server, exc.args[0] if exc.args else "connection closed", framing, other))
    if isinstance(exc, ProtocolError):
        return "protocol error from {}: {}".format(server, exc.reason)
    return "{}: {}".format(server, exc)


def summary(sent: int, rtts, resumed: int = 0) -> str:
    received = len(rtts)
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    if rtts:
        ms = [r * 1000 for r in rtts]
        rtt = "{:.3f}/{:.3f}/{:.3f}".format(min(ms), sum(ms) / len(ms), max(ms))
    else:
        rtt = "-/-/-"
    line = "{} sent, {} received, {:.0f}% loss, rtt min/avg/max = {} ms".format(
        sent, received, loss, rtt)
    if resumed:
        line += ", {} resumed".format(resumed)
    return line


async def run_pings(reactor, client, count, interval, timeout, out=print):
    rtts = []
    for seq in range(count):
        if seq:
            await task.deferLater(reactor, interval, lambda: None)
        if client.end_reason is not None:
            out("session ended: {}".format(client.end_reason))
            break
        try:
            rtt = await client.ping(timeout)
        except (defer.TimeoutError, defer.CancelledError):
            out("seq={} timeout".format(seq))
            continue
        rtts.append(rtt)
        out("pong from {} seq={} time={:.3f} ms".format(
            join_host_port(*client.server_udp), seq, rtt * 1000))
    return rtts


def private_key_given_as_public(spec: str, host: str, port: int, timeout: float,
                                framing: str) -> bool:
    """True if ``@FILE`` is a private key file whose public half the server proves.

    A private and a public key file look the same (a line of base64); after a
    key mismatch this asks the server (a hello, no login) whether the file's
    key, taken as a private key, is the server's.
    """
    from nacl.public import PrivateKey

    from gamesession.client.healthcheck import Unhealthy, check
    from gamesession.keys import KeyFileError, decode_key

    if not spec.startswith("@"):
        return False
    try:
        with open(spec[1:]) as f:
            derived = bytes(PrivateKey(decode_key(f.read())).public_key)
        check(host, port, timeout, framing, derived)
    except (OSError, KeyFileError, Unhealthy):
        return False
    return True


def _fail(message: str, command: str = "ping") -> None:
    print("gamesession {}: {}".format(command, message), file=sys.stderr)
    raise SystemExit(1)


async def connect_from_args(reactor, args, server_key, password: "Password | None" = None,
                            command: str = "ping"):
    """Log in as the command-line options ``args`` say (knocking first with
    ``--knock``, asking for the password as ``password`` says); returns the GameClient.

    On failure prints one line on stderr, ``gamesession COMMAND: ...`` (see
    ``describe_failure``), and exits 1.  ``ping`` and ``room`` share it.
    """
    if password is None:
        password = Password(args.password)
    host, port = split_host_port(args.server, 7000)
    server = join_host_port(host, port)

    def connect(secret):
        return GameClient.connect(
            reactor, host, port, server_key, args.user, secret,
            framing=args.framing, udp_port=args.udp_port, timeout=args.timeout)

    def knock_then_connect(secret):
        if getattr(args, "knock", None):
            return knock_and_connect(reactor, host, args.knock, lambda: connect(secret),
                                     secret=args.knock_secret,
                                     server_id=getattr(args, "knock_server_id_bytes", b""))
        return connect(secret)

    try:
        return await login_with_password(knock_then_connect, password, args.user, server)
    except Exception as e:
        spec = getattr(args, "server_key_spec", "")
        if isinstance(e, ServerKeyMismatch) and private_key_given_as_public(
                spec, host, port, args.timeout, args.framing):
            _fail("--server-key {}: that file is the server's private key; pin its public key"
                  " instead (gamesession pubkey --key-file {}), and keep the private key"
                  " on the server".format(spec, spec[1:]), command)
        _fail(describe_failure(e, server, args.framing), command)


async def ping_main(reactor, args, server_key, password: "Password | None" = None):
    client = await connect_from_args(reactor, args, server_key, password, "ping")
    server = join_host_port(*split_host_port(args.server, 7000))
    print("logged in to {} as {}; UDP to {}".format(
        server, client.welcome.user, join_host_port(*client.server_udp)))
    if getattr(args, "knock", None):
        async def knock_again():
            await knock(reactor, host, args.knock, secret=args.knock_secret)
            await task.deferLater(reactor, KNOCK_SETTLE, lambda: None)
        client.before_reconnect = lambda: defer.ensureDeferred(knock_again())
    client.on_reconnecting = lambda reason: print("reconnecting... ({})".format(reason))
    client.on_reconnected = lambda resumed: print(
        "resumed the session" if resumed else "logged in again (the session could not resume)")
    client.on_resume_failed = lambda reason: print("could not resume: {}".format(reason))
    rtts = await run_pings(reactor, client, args.count, args.interval, args.timeout)
    ended_early = client.end_reason is not None
    if not ended_early:
        await client.logout().addTimeout(args.timeout, reactor).addErrback(lambda _: None)
    print(summary(args.count, rtts, client.resumed))
    if not rtts and ended_early:
        raise SystemExit(1)
    if not rtts:
        udp = join_host_port(*client.server_udp)
        _fail("no UDP reply came back from {}: is UDP port {} reachable (published or forwarded,"
              " not firewalled){}?".format(
                  udp, client.server_udp[1],
                  ", and is --udp-port right" if args.udp_port else ""))
