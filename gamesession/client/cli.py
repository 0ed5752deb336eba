"""The ``gamesession`` command: keys, a ping client, rooms, status, healthcheck and benchmarks.

Every failure a user can cause (a missing file, a wrong address, a server that
is down) ends with one line on stderr and a non-zero exit, never a traceback:
``CommandError`` (exit 2) for bad arguments, exit 1 for a failed check.
"""

import argparse
import sys

import gamesession
from gamesession.client.address import split_host_port

from nacl.public import PrivateKey

from gamesession.keys import KeyFileError, public_key_text, read_private_key, read_public_key, write_private_key


class CommandError(Exception):
    """A failure to report as one line and a non-zero exit."""


DESCRIPTION = ("The gamesession command: server keys, a ping client, a room client, a health"
               " check, a summary of a server's figures, and benchmarks.  The server itself runs under twistd:"
               " twistd -n gamesession --help.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after each option's help, except for unset defaults."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _host_port(option: str, text: str, default_port: int = 7000):
    
    try:
        return split_host_port(text, default_port)
    except ValueError as e:
        raise CommandError("{}: {}".format(option, e))


def cmd_keygen(args):
    try:
        key = PrivateKey.generate()
        write_private_key(args.key_file, key, force=args.force)
    except KeyFileError as e:
        raise CommandError(str(e))
    if not args.quiet:
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
    except KnockError as e:
        raise CommandError(str(e))
    except OSError as e:
        raise CommandError("cannot write {}: {}".format(args.file, e.strerror))
    print("wrote a knock secret to {} (mode 0600)".format(args.file))


def _login_options(args):
    """(server key, Password) of the options of a command that logs in (ping,
    room), with --knock/--knock-secret parsed in place; CommandError when wrong."""
    from gamesession.client.password import Password, PasswordError
    from gamesession.knock.rule import KnockError, load_secret, parse_ports

    try:
        server_key = read_public_key(args.server_key)
    except KeyFileError as e:
        raise CommandError("--server-key: {}".format(e))
    args.server_key_spec = args.server_key
    _host_port("--server", args.server)
    if args.timeout < 0.001:
        raise CommandError("--timeout must be at least 0.001")
    if args.udp_port is not None and not 0 < args.udp_port < 65536:
        raise CommandError("--udp-port must be a port from 1 to 65535")
    try:
        password = Password.from_args(args)
    except PasswordError as e:
        raise CommandError(str(e))
    try:
        args.knock = parse_ports(args.knock) if args.knock else None
        args.knock_secret = load_secret(args.knock_secret) if args.knock_secret else None
    except KnockError as e:
        raise CommandError(str(e))
    if args.knock_secret is not None and args.knock is None:
        raise CommandError("--knock-secret needs --knock")
    args.knock_server_id_bytes = _knock_server_id(args)
    return server_key, password


def cmd_ping(args):
    from twisted.internet import task

    from gamesession.client.ping import ping_main

    for option, value, low in (("--count", args.count, 1), ("--interval", args.interval, 0)):
        if value < low:
            raise CommandError("{} must be at least {:g}".format(option, low))
    server_key, password = _login_options(args)
    return task.react(lambda reactor: ping_main(reactor, args, server_key, password))


def cmd_room(args):
    from twisted.internet import task

    from gamesession.client.roomcli import room_main
    from gamesession.protocol.rooms import room_bytes, valid_room_type

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
    server_key, password = _login_options(args)
    return task.react(lambda reactor: room_main(reactor, args, server_key, password))


def cmd_status(args):
    from gamesession.client.status import StatusError, status_main

    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    try:
        status_main(args.metrics_url, args.timeout)
    except StatusError as e:
        print("gamesession status: {}".format(e), file=sys.stderr)
        return 1


def cmd_healthcheck(args):
    from gamesession.client.healthcheck import Unhealthy, check
    from gamesession.knock.rule import KnockError, load_secret, parse_ports

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
    host, port = _host_port("--server", args.server)
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    try:
        knock = parse_ports(args.knock) if args.knock else None
        knock_secret = load_secret(args.knock_secret) if args.knock_secret else None
    except KnockError as e:
        raise CommandError(str(e))
    if knock_secret is not None and knock is None:
        raise CommandError("--knock-secret needs --knock")
    server_id = _knock_server_id(args)
    try:
        result = check(host, port, args.timeout, args.framing, server_key, knock, knock_secret,
                       knock_server_id=server_id)
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


def _add_login_arguments(p, password) -> None:
    """The options of every command that logs in (ping, room)."""
    p.add_argument("--server", default="127.0.0.1:7000", help="HOST[:PORT] of the login service")
    p.add_argument("--server-key", required=True,
                   help="the server's public key (base64, as pubkey prints it) or @FILE holding it")
    p.add_argument("--user", default="guest", help="the user name to log in as")
    password.add_arguments(p)
    p.add_argument("--udp-port", type=int, default=None,
                   help="UDP port to send to instead of the one the server advertises")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the login and for each reply")
    p.add_argument("--framing", choices=["int16", "line"], default="int16",
                   help="the server's --framing")
    _add_knock_arguments(p)


def _add_knock_arguments(p) -> None:
    p.add_argument("--knock", metavar="P1,P2,...|@FILE",
                   help="knock on these UDP ports first (resent if the login port stays shut)")
    p.add_argument("--knock-secret", metavar="FILE", help="send authenticated knocks with this secret")
    p.add_argument("--knock-server-id", metavar="NAME", default=None,
                   help="the server's --knock-server-id, if it binds its knocks to one")


def _knock_server_id(args) -> bytes:
    from gamesession.knock.options import parse_server_id
    from gamesession.knock.rule import KnockError

    if not args.knock_server_id:
        return b""
    if not args.knock_secret:
        raise CommandError("--knock-server-id needs --knock-secret")
    try:
        return parse_server_id(args.knock_server_id)
    except KnockError as e:
        raise CommandError("--knock-server-id: {}".format(e))


def build_parser() -> argparse.ArgumentParser:
    from gamesession.client import password

    parser = argparse.ArgumentParser(prog="gamesession", description=DESCRIPTION)
    parser.add_argument("--version", action="version",
                        version="gamesession {}".format(gamesession.__version__))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text)

    p = command("keygen", "create a server key file (mode 0600)")
    p.add_argument("--key-file", default="gamesession.key", help="the key file to create")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print nothing (by default the public key, for scripts: KEY=$(... keygen))")
    p.set_defaults(func=cmd_keygen)

    p = command("pubkey", "print the public key of a key file (what clients pin)")
    p.add_argument("--key-file", default="gamesession.key", help="the server's private key file")
    p.set_defaults(func=cmd_pubkey)

    p = command("ping", "log in, ping over the session's UDP channel, log out")
    _add_login_arguments(p, password)
    p.add_argument("--count", type=int, default=4, help="pings to send")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between pings")
    p.set_defaults(func=cmd_ping)

    p = command("room", "join a room; print its events, send stdin lines to it")
    p.description = (
        "Join (or create) a room and print one line per event: joined ROOM as USER (members: "
        "a, b), + USER joined, - USER left (REASON), <USER> TEXT.  Each line of stdin goes to "
        "the other members; at end of input leave, log out and exit 0.")
    _add_login_arguments(p, password)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--room", metavar="NAME",
                       help="join the fullest open room of type NAME with a free seat, or "
                            "create one (join_or_create; without --join or --create: lobby)")
    which.add_argument("--join", metavar="ID", help="join the room with this id (16 hex digits)")
    which.add_argument("--create", metavar="TYPE", help="create a new room of this type")
    p.add_argument("--private", action="store_true",
                   help="with --create: leave the room out of room lists (joinable by id)")
    p.add_argument("--max-members", type=int, default=None,
                   help="with --create or --room: seats in a room this creates")
    p.add_argument("--udp", action="store_true",
                   help="send stdin lines as room datagrams (UDP) instead of messages (TCP)")
    p.set_defaults(func=cmd_room)

    p = command("knock-secret", "create a secret file for authenticated knocks (mode 0600)")
    p.add_argument("--file", required=True, help="the secret file to create")
    p.set_defaults(func=cmd_knock_secret)

    p = command("status", "print a short summary of a server's --metrics figures")
    p.add_argument("--metrics-url", default="http://127.0.0.1:9100/metrics",
                   help="URL of the server's --metrics endpoint (/metrics is added to a bare host:port)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    p.set_defaults(func=cmd_status)

    p = command("healthcheck",
                "exit 0 if the login service answers a hello with a challenge, else 1")
    p.add_argument("--server", default="127.0.0.1:7000", help="HOST[:PORT] of the login service")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for the whole check")
    p.add_argument("--framing", choices=["int16", "line"], default="int16",
                   help="the server's --framing")
    p.add_argument("--server-key", default=None,
                   help="also check the server proves this public key (base64 or @FILE)")
    p.add_argument("--key-file", default=None,
                   help="also check the server proves the key in this private key file")
    _add_knock_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when healthy")
    p.set_defaults(func=cmd_healthcheck)

    from gamesession.bench.command import add_arguments as add_bench_arguments

    p = command("bench", "measure throughput, logins and memory against plain Twisted")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
    _use_formatter(parser, HelpFormatter)
    return parser


def _use_formatter(parser, formatter_class) -> None:
    """Give ``parser`` and all its subcommands' parsers ``formatter_class``."""
    parser.formatter_class = formatter_class
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _use_formatter(child, formatter_class)


def main(argv=None):
    """Run the ``gamesession`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as e:
        print("gamesession {}: {}".format(args.command, e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gamesession {}: interrupted".format(args.command), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
