"""``gamesession ping``: log in, send pings over UDP, print a summary.

The last line is ``N sent, M received, L% loss, rtt min/avg/max = a/b/c ms``,
then ``, K resumed`` when the control connection dropped and the session
resumed K times (the pings go on meanwhile: they travel over UDP).
Exit 0 when the login succeeded and at least one pong came back; otherwise
one line on stderr says what failed.
"""

import sys

from twisted.internet import defer, error, task

from gamesession.client.address import split_host_port
from gamesession.client.gameclient import GameClient
from gamesession.protocol.clientcore import LoginFailed
from gamesession.protocol.handshake import ServerKeyMismatch
from gamesession.knock.client import DEFAULT_SETTLE as KNOCK_SETTLE
from gamesession.knock.client import knock, knock_and_connect
from gamesession.protocol.wire import ErrorCode, ProtocolError


def describe_failure(exc, server: str) -> str:
    """One clear line for each way a login can fail."""
    if isinstance(exc, ServerKeyMismatch):
        return "server key mismatch: {} did not prove it holds the pinned key".format(server)
    if isinstance(exc, LoginFailed):
        if exc.code == ErrorCode.AUTH_FAILED:
            return "auth failed: wrong user name or password"
        return "login refused by {}: {}".format(server, exc)
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused by {}".format(server)
    if isinstance(exc, (defer.TimeoutError, error.TimeoutError)):
        return "timed out connecting or logging in to {}".format(server)
    if isinstance(exc, error.DNSLookupError):
        return "cannot resolve {}".format(server)
    if isinstance(exc, (error.ConnectionClosed, error.ConnectionLost, error.ConnectError)):
        return "{}: {} (if the server uses port knocking, pass --knock)".format(
            server, exc.args[0] if exc.args else "connection closed")
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
        out("pong from {}:{} seq={} time={:.3f} ms".format(
            client.server_udp[0], client.server_udp[1], seq, rtt * 1000))
    return rtts


async def ping_main(reactor, args, server_key):

    host, port = split_host_port(args.server, 7000)
    server = "{}:{}".format(host, port)
    def connect():
        return GameClient.connect(
            reactor, host, port, server_key, args.user, args.password,
            framing=args.framing, udp_port=args.udp_port, timeout=args.timeout)

    try:
        if getattr(args, "knock", None):
            client = await knock_and_connect(reactor, host, args.knock, connect,
                                             secret=args.knock_secret)
        else:
            client = await connect()
    except Exception as e:
        print("gamesession ping: " + describe_failure(e, server), file=sys.stderr)
        raise SystemExit(1)
    print("logged in to {} as {}; UDP to {}:{}".format(
        server, client.welcome.user, client.server_udp[0], client.server_udp[1]))
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
    if client.end_reason is None:
        await client.logout().addTimeout(args.timeout, reactor).addErrback(lambda _: None)
    print(summary(args.count, rtts, client.resumed))
    if not rtts:
        raise SystemExit(1)
