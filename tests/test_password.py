"""Where a logging-in command gets its password (gamesession/client/password.py)."""

import argparse

import pytest
import pytest_twisted

from gamesession.client.password import (Password, PasswordError, add_arguments,
                                         login_with_password)
from gamesession.protocol.clientcore import LoginFailed


class Stdin:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_sources_in_order(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from file\nsecond line ignored\n")
    env = {"GAMESESSION_PASSWORD": "from env"}
    assert Password.from_args(parse("--password", "flag"), env, Stdin(False)).first() == "flag"
    assert Password.from_args(parse("--password-file", str(f)), env, Stdin(False)).first() \
        == "from file"
    assert Password.from_args(parse(), env, Stdin(False)).first() == "from env"
    nothing = Password.from_args(parse(), {}, Stdin(False))
    assert nothing.first() == "" and not nothing.may_prompt()
    assert Password.from_args(parse(), {}, Stdin(True)).may_prompt()
    assert not Password.from_args(parse(), env, Stdin(True)).may_prompt()
    assert Password.from_args(parse("--password", ""), {}, Stdin(True)).first() == ""


def test_unusable_sources_are_clear_errors(tmp_path):
    with pytest.raises(PasswordError, match="not both"):
        Password.from_args(parse("--password", "a", "--password-file", "x"), {}, Stdin(False))
    with pytest.raises(PasswordError, match="cannot read --password-file"):
        Password.from_args(parse("--password-file", str(tmp_path / "none")), {}, Stdin(False))


@pytest_twisted.ensureDeferred
async def test_prompts_once_after_the_empty_password_is_refused():
    tried, asked = [], []

    async def connect(password):
        tried.append(password)
        if password != "secret":
            raise LoginFailed(401, "auth failed")
        return "client"

    password = Password(None, interactive=True, ask=lambda prompt: asked.append(prompt) or "secret")
    assert await login_with_password(connect, password, "alice", "127.0.0.1:7000") == "client"
    assert tried == ["", "secret"] and asked == ["password for alice on 127.0.0.1:7000: "]
    # A given password, or no terminal: no prompt, the refusal stands.
    for password in (Password("wrong", interactive=True), Password(None, interactive=False)):
        with pytest.raises(LoginFailed):
            await login_with_password(connect, password, "alice", "server")
    # Other refusals (server full...) never prompt.

    async def full(password):
        raise LoginFailed(503, "server full")
    with pytest.raises(LoginFailed):
        await login_with_password(full, Password(None, interactive=True,
                                                 ask=lambda p: pytest.fail("prompted")),
                                  "alice", "server")
