"""The ``gamesession`` command: keys and a ping client (more subcommands join here)."""

import argparse
import sys

from nacl.public import PrivateKey

from .keys import KeyFileError, public_key_text, read_private_key, read_public_key, write_private_key


class CommandError(Exception):
    """A failure to report as one line and a non-zero exit."""


def split_host_port(text: str, default_port: int):
    """``HOST[:PORT]``, ``[V6]:PORT`` or a bare IPv6 address."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def cmd_keygen(args):
    try:
        key = PrivateKey.generate()
        write_private_key(args.key_file, key, force=args.force)
    except KeyFileError as e:
        raise CommandError(str(e))
    print(public_key_text(key))


def cmd_pubkey(args):
    try:
        print(public_key_text(read_private_key(args.key_file)))
    except KeyFileError as e:
        raise CommandError(str(e))


def cmd_knock_secret(args):
    from .knock import KnockError, write_secret_file

    try:
        write_secret_file(args.file)
    except (KnockError, OSError) as e:
        raise CommandError(str(e))
    print("wrote a knock secret to {} (mode 0600)".format(args.file))


def cmd_ping(args):
    from twisted.internet import task

    from .knock import KnockError, load_secret, parse_ports
    from .pinger import ping_main

    try:
        server_key = read_public_key(args.server_key)
    except KeyFileError as e:
        raise CommandError("--server-key: {}".format(e))
    try:
        args.knock = parse_ports(args.knock) if args.knock else None
        args.knock_secret = load_secret(args.knock_secret) if args.knock_secret else None
    except KnockError as e:
        raise CommandError(str(e))
    if args.knock_secret is not None and args.knock is None:
        raise CommandError("--knock-secret needs --knock")
    return task.react(lambda reactor: ping_main(reactor, args, server_key))


def check_login_port(host: str, port: int, timeout: float, framing: str = "int16") -> None:
    """Connect, send a hello, and expect the server's challenge; CommandError if not.

    For container health checks and monitoring: proves the login service
    accepts connections and speaks the protocol, without logging in.
    """
    import socket
    import struct

    from .clientcore import ClientCore
    from .wire import ProtocolError, decode

    hello = ClientCore(bytes(32), "healthcheck", "").hello()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            if framing == "line":
                conn.sendall(hello + b"\n")
                reply = conn.makefile("rb").readline().rstrip(b"\r\n")
            else:
                conn.sendall(struct.pack("!H", len(hello)) + hello)
                stream = conn.makefile("rb")
                header = stream.read(2)
                reply = stream.read(struct.unpack("!H", header)[0]) if len(header) == 2 else b""
    except socket.timeout:
        raise CommandError("{}:{} did not answer within {:g} seconds".format(host, port, timeout))
    except OSError as e:
        raise CommandError("{}:{}: {}".format(host, port, e.strerror or e))
    if not reply:
        raise CommandError("{}:{} closed the connection without answering".format(host, port))
    try:
        message = decode(reply)
    except ProtocolError as e:
        raise CommandError("{}:{} answered garbage: {}".format(host, port, e.reason))
    if message.get("type") != "challenge":
        raise CommandError("{}:{} answered {} {}".format(
            host, port, message.get("type"), message.get("reason", "")).strip())


def cmd_healthcheck(args):
    host, port = split_host_port(args.server, 7000)
    try:
        check_login_port(host, port, args.timeout, args.framing)
    except CommandError as e:
        print("gamesession healthcheck: unhealthy: {}".format(e), file=sys.stderr)
        return 1
    print("ok: {}:{} answered the hello".format(host, port))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gamesession", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("keygen", help="create a server key file (mode 0600)")
    p.add_argument("--key-file", default="gamesession.key")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("pubkey", help="print the public key of a key file")
    p.add_argument("--key-file", default="gamesession.key")
    p.set_defaults(func=cmd_pubkey)

    p = sub.add_parser("ping", help="log in, ping over the session's UDP channel, log out")
    p.add_argument("--server", default="127.0.0.1:7000", help="HOST[:PORT] of the login service")
    p.add_argument("--server-key", required=True,
                   help="the server's public key (base64) or @FILE holding it")
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.2, help="seconds between pings")
    p.add_argument("--udp-port", type=int, default=None,
                   help="UDP port to send to instead of the one the server advertises")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the login and for each pong")
    p.add_argument("--framing", choices=["int16", "line"], default="int16")
    p.add_argument("--knock", metavar="P1,P2,...|@FILE",
                   help="knock on these UDP ports first (resent if the login port stays shut)")
    p.add_argument("--knock-secret", metavar="FILE", help="send authenticated knocks with this secret")
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("knock-secret", help="create a secret file for authenticated knocks (mode 0600)")
    p.add_argument("--file", required=True)
    p.set_defaults(func=cmd_knock_secret)

    p = sub.add_parser("healthcheck",
                       help="check that the login port accepts a connection and answers the hello")
    p.add_argument("--server", default="127.0.0.1:7000", help="HOST[:PORT] of the login service")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for connect and answer")
    p.add_argument("--framing", choices=["int16", "line"], default="int16")
    p.set_defaults(func=cmd_healthcheck)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as e:
        print("gamesession {}: {}".format(args.command, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
