"""The ``gamesession`` command: keys, a ping client, rooms, status, healthcheck and benchmarks."""

import argparse
import sys

from nacl.public import PrivateKey

from gamesession.client.address import split_host_port
from gamesession.keys import KeyFileError, public_key_text, read_private_key, read_public_key, write_private_key


class CommandError(Exception):
    """A failure to report as one line and a non-zero exit."""



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
    from gamesession.knock.rule import KnockError, write_secret_file

    try:
        write_secret_file(args.file)
    except (KnockError, OSError) as e:
        raise CommandError(str(e))
    print("wrote a knock secret to {} (mode 0600)".format(args.file))


def _login_options(args):
    """The server key of the login options, with --knock/--knock-secret parsed in place."""
    from gamesession.knock.rule import KnockError, load_secret, parse_ports

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
    return server_key


def cmd_ping(args):
    from twisted.internet import task

    from gamesession.client.ping import ping_main

    server_key = _login_options(args)
    return task.react(lambda reactor: ping_main(reactor, args, server_key))


def cmd_room(args):
    from twisted.internet import task

    from gamesession.client.roomcli import room_main
    from gamesession.protocol.rooms import room_bytes, valid_room_type

    server_key = _login_options(args)
    if args.join is not None:
        try:
            args.join = room_bytes(args.join).hex()
        except ValueError:
            raise CommandError("--join: a room id is 16 hex digits, not {!r}".format(args.join))
    for option in ("room", "create"):
        value = getattr(args, option)
        if value is not None and not valid_room_type(value):
            raise CommandError("--{}: a room type is 1-32 characters of A-Z a-z 0-9 _ . -, "
                               "not {!r}".format(option, value))
    if args.max_members is not None and args.max_members < 1:
        raise CommandError("--max-members must be at least 1")
    return task.react(lambda reactor: room_main(reactor, args, server_key))


def cmd_status(args):
    from gamesession.client.status import StatusError, status_main

    try:
        status_main(args.metrics_url, args.timeout)
    except StatusError as e:
        print("gamesession status: {}".format(e), file=sys.stderr)
        return 1


def cmd_healthcheck(args):
    from gamesession.client.healthcheck import Unhealthy, check

    if args.server_key and args.key_file:
        raise CommandError("give --server-key or --key-file, not both")
    server_key = None
    try:
        if args.server_key:
            server_key = bytes(read_public_key(args.server_key))
        elif args.key_file:
            server_key = bytes(read_private_key(args.key_file).public_key)
    except KeyFileError as e:
        raise CommandError("--server-key/--key-file: {}".format(e))
    host, port = split_host_port(args.server, 7000)
    try:
        result = check(host, port, args.timeout, args.framing, server_key)
    except Unhealthy as e:
        print("gamesession healthcheck: unhealthy: {}".format(e), file=sys.stderr)
        return 1
    if not args.quiet:
        print("healthy: {}".format(result))
    return 0


def cmd_bench(args):
    from gamesession.bench.command import run
    from gamesession.bench.runner import BenchError

    try:
        return run(args)
    except BenchError as e:
        raise CommandError(str(e))


def _add_login_arguments(p) -> None:
    """The options of every command that logs in (ping, room)."""
    p.add_argument("--server", default="127.0.0.1:7000", help="HOST[:PORT] of the login service")
    p.add_argument("--server-key", required=True,
                   help="the server's public key (base64) or @FILE holding it")
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="")
    p.add_argument("--udp-port", type=int, default=None,
                   help="UDP port to send to instead of the one the server advertises")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the login and for each reply")
    p.add_argument("--framing", choices=["int16", "line"], default="int16")
    p.add_argument("--knock", metavar="P1,P2,...|@FILE",
                   help="knock on these UDP ports first (resent if the login port stays shut)")
    p.add_argument("--knock-secret", metavar="FILE", help="send authenticated knocks with this secret")


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
    _add_login_arguments(p)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--interval", type=float, default=0.2, help="seconds between pings")
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser(
        "room", help="join a room; print its events, send stdin lines to it",
        description="Join (or create) a room, print one line per event (joined ROOM as USER "
        "(members: a, b), + USER joined, - USER left (REASON), <USER> TEXT) and send each "
        "line of stdin to the room; at end of input leave, log out and exit 0.")
    _add_login_arguments(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--room", metavar="NAME",
                       help="join the fullest open room of type NAME with a free seat, or "
                            "create one (join_or_create; the default, with NAME lobby)")
    which.add_argument("--join", metavar="ID", help="join the room with this id (16 hex digits)")
    which.add_argument("--create", metavar="TYPE", help="create a new room of this type")
    p.add_argument("--private", action="store_true",
                   help="with --create: leave the room out of room lists (joinable by id)")
    p.add_argument("--max-members", type=int, default=None,
                   help="with --create or --room: seats in a room this creates")
    p.add_argument("--udp", action="store_true",
                   help="send stdin lines as room datagrams (UDP) instead of messages (TCP)")
    p.set_defaults(func=cmd_room)

    p = sub.add_parser("knock-secret", help="create a secret file for authenticated knocks (mode 0600)")
    p.add_argument("--file", required=True)
    p.set_defaults(func=cmd_knock_secret)

    p = sub.add_parser("status", help="print a short summary of a server's --metrics figures")
    p.add_argument("--metrics-url", default="http://127.0.0.1:9100/metrics",
                   help="URL of the server's --metrics endpoint (/metrics is added to a bare host:port)")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("healthcheck",
                       help="exit 0 if the login service answers a hello with a challenge, else 1")
    p.add_argument("--server", default="127.0.0.1:7000", help="HOST[:PORT] of the login service")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for the whole check")
    p.add_argument("--framing", choices=["int16", "line"], default="int16")
    p.add_argument("--server-key", default=None,
                   help="also check the server proves this public key (base64 or @FILE)")
    p.add_argument("--key-file", default=None,
                   help="also check the server proves the key in this private key file")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when healthy")
    p.set_defaults(func=cmd_healthcheck)

    from gamesession.bench.command import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="measure throughput, logins and memory against plain Twisted")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
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
