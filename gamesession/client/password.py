"""Where a command that logs in gets the password, without putting it in ``ps``.

In order: ``--password`` (visible to other local users in ``ps``: for tests
and throwaway accounts), ``--password-file FILE`` (its first line),
the ``GAMESESSION_PASSWORD`` environment variable, else none.  With none and
stdin a terminal, a server that refuses the empty password (so it is not in
guest mode) gets one more attempt with a password asked at a prompt.

    add_arguments(parser)                   # --password, --password-file
    password = Password.from_args(args)     # PasswordError if unusable
    client = await login_with_password(
        lambda pw: GameClient.connect(..., user, pw, ...), password, user, server)
"""

import getpass
import os
import sys

from gamesession.protocol.clientcore import LoginFailed
from gamesession.protocol.wire import ErrorCode

ENVIRONMENT_VARIABLE = "GAMESESSION_PASSWORD"


class PasswordError(ValueError):
    """The password options cannot be used; the message says why."""


def add_arguments(parser) -> None:
    """Add ``--password`` and ``--password-file`` to an argparse parser."""
    parser.add_argument("--password", default=None,
                        help="the password (visible in ps; prefer --password-file or "
                             "${})".format(ENVIRONMENT_VARIABLE))
    parser.add_argument("--password-file", default=None, metavar="FILE",
                        help="read the password from the first line of FILE")


def read_password_file(path: str) -> str:
    """The first line of ``path``, without its line ending."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except OSError as e:
        raise PasswordError("cannot read --password-file {}: {}".format(path, e.strerror))
    except UnicodeDecodeError:
        raise PasswordError("--password-file {} is not UTF-8 text".format(path))


class Password:
    """The password a command was given (or None), and whether it may prompt."""

    def __init__(self, given, interactive: bool = False, ask=getpass.getpass):
        self.given = given
        self.interactive = interactive
        self.ask = ask

    @classmethod
    def from_args(cls, args, environ=None, stdin=None, ask=getpass.getpass) -> "Password":
        """From ``--password``/``--password-file``, then ``$GAMESESSION_PASSWORD``."""
        environ = os.environ if environ is None else environ
        stdin = sys.stdin if stdin is None else stdin
        if args.password is not None and args.password_file is not None:
            raise PasswordError("give --password or --password-file, not both")
        if args.password is not None:
            given = args.password
        elif args.password_file is not None:
            given = read_password_file(args.password_file)
        else:
            given = environ.get(ENVIRONMENT_VARIABLE)
        try:
            interactive = stdin.isatty()
        except (AttributeError, ValueError):
            interactive = False
        return cls(given, interactive, ask)

    def first(self) -> str:
        """The password of the first attempt: the given one, else empty."""
        return self.given if self.given is not None else ""

    def may_prompt(self) -> bool:
        """True when nothing was given and a person at a terminal can type one."""
        return self.given is None and self.interactive

    def prompt(self, user: str, server: str) -> str:
        """Ask at the terminal (no echo)."""
        return self.ask("password for {} on {}: ".format(user, server))


async def login_with_password(connect, password: Password, user: str, server: str):
    """``await connect(pw)`` with the given password; if none was given, the
    server refuses the empty one (AUTH_FAILED) and a terminal is there, once
    more with a password typed at the prompt."""
    try:
        return await connect(password.first())
    except LoginFailed as e:
        if e.code != ErrorCode.AUTH_FAILED or not password.may_prompt():
            raise
    return await connect(password.prompt(user, server))
