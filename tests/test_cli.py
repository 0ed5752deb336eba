"""The ``gamesession`` command as a new user meets it: help, version, and one line per mistake."""

import argparse
import io
import os
import socket
import threading

import pytest

import gamesession
from gamesession.bench.runner import Progress
from gamesession.client import cli
from gamesession.client.address import join_host_port, split_host_port

KEY = "A" * 43 + "="

pytestmark = pytest.mark.timeout(60)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == "gamesession " + gamesession.__version__


def _parsers(parser, path=("gamesession",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, path + (name,))


def test_help_shows_every_default_and_no_markup():
    for path, parser in _parsers(cli.build_parser()):
        text = parser.format_help()
        assert "``" not in text, path
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                shown = "(default: {})".format(action.default)
                assert shown in " ".join(text.split()), (path, action.dest)


@pytest.mark.parametrize("text, expected", [
    ("example.org", ("example.org", 7000)),
    ("example.org:17000", ("example.org", 17000)),
    ("[::1]:9", ("::1", 9)),
    ("[::1]", ("::1", 7000)),
    ("::1", ("::1", 7000)),
])
def test_split_host_port(text, expected):
    assert split_host_port(text, 7000) == expected
    host, port = expected
    assert split_host_port(join_host_port(host, port), 1) == expected


@pytest.mark.parametrize("text", ["host:abc", "host:0", "host:70000", ":7000", "[::1", "[::1]x"])
def test_split_host_port_refuses_malformed(text):
    with pytest.raises(ValueError):
        split_host_port(text, 7000)


def _mistakes(tmp_path):
    missing = str(tmp_path / "missing")
    directory = str(tmp_path)
    not_json = tmp_path / "notes.txt"
    not_json.write_text("not json\n")
    return [
        (["keygen", "--key-file", os.path.join(missing, "k")], "cannot write key file"),
        (["pubkey", "--key-file", directory], "cannot read key file"),
        (["knock-secret", "--file", os.path.join(missing, "s")], "cannot write"),
        (["ping", "--server-key", "nope"], "--server-key"),
        (["ping", "--server-key", "@" + directory], "--server-key"),
        (["ping", "--server-key", KEY, "--server", "127.0.0.1:abc"], "the port must be"),
        (["ping", "--server-key", KEY, "--server", "[::1"], "[IPV6]:PORT"),
        (["ping", "--server-key", KEY, "--count", "0"], "--count"),
        (["ping", "--server-key", KEY, "--udp-port", "0"], "--udp-port"),
        (["ping", "--server-key", KEY, "--password-file", missing], "--password-file"),
        (["ping", "--server-key", KEY, "--password", "x", "--password-file", str(not_json)],
         "not both"),
        (["ping", "--server-key", KEY, "--knock", "1,x"], "knock port"),
        (["ping", "--server-key", KEY, "--knock-secret", missing], "knock"),
        (["healthcheck", "--server", ":7000"], "no host"),
        (["healthcheck", "--server", "127.0.0.1:0"], "the port must be"),
        (["healthcheck", "--key-file", missing], "cannot read key file"),
        (["healthcheck", "--knock", "99999"], "knock port"),
        (["healthcheck", "--timeout", "0"], "--timeout"),
        (["status", "--timeout", "0"], "--timeout"),
        (["status", "--metrics-url", "http://[::1"], "bad --metrics-url"),
        (["status", "--metrics-url", "http://127.0.0.1:abc/"], "bad --metrics-url"),
        (["status", "--metrics-url", "htp://127.0.0.1/"], "cannot fetch"),
        (["bench", "report", missing], "cannot read"),
        (["bench", "report", str(not_json)], "is not a JSON result"),
    ]


def test_every_command_reports_a_user_mistake_in_one_line(tmp_path, capsys):
    for argv, fragment in _mistakes(tmp_path):
        status = cli.main(argv)
        err = capsys.readouterr().err
        assert status in (1, 2), argv
        assert err.count("\n") == 1 and fragment in err, (argv, err)
        assert err.startswith("gamesession {}: ".format(argv[0])), err


def test_argument_errors_are_argparse_usage_not_tracebacks(capsys):
    for argv in (["bench", "udp", "--seconds", "-1"], ["bench", "udp", "--rounds", "0"],
                 ["bench", "hotpath", "--packets", "0"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        assert "invalid positive" in capsys.readouterr().err


class Listener:
    """A loopback TCP listener that reads the request, answers ``reply`` and closes."""

    def __init__(self, reply: bytes):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(self.reply)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(4096)

    def close(self):
        self.thread.join(5)
        self.sock.close()


@pytest.mark.network
@pytest.mark.parametrize("reply, fragment", [
    (b"\x00\x10not an http answer", "did not answer HTTP"),
    (b"HTTP/1.0 200 OK\r\n\r\n\xff\xfe\x00 binary", "not UTF-8"),
    (b"HTTP/1.0 200 OK\r\n\r\nfoo{bar=1 2 3 4\n", "not Prometheus text"),
])
def test_status_pointed_at_the_wrong_port_is_one_line(reply, fragment, capsys):
    listener = Listener(reply)
    try:
        status = cli.main(["status", "--metrics-url", "127.0.0.1:{}".format(listener.port),
                           "--timeout", "5"])
    finally:
        listener.close()
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and fragment in err, err


def test_bench_progress_without_a_terminal_prints_plain_lines():
    stream = io.StringIO()
    progress = Progress(stream)
    for i in range(50):
        progress.show("logins {}/5s {} done".format(i % 5, i))
    progress.show("logging in 10/10 sessions")
    progress.done()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3, lines  # the first and last of a phase, the first of the next
    assert lines[0].endswith("logins 0/5s 0 done") and lines[1].endswith("logins 4/5s 49 done")
    assert lines[2].endswith("logging in 10/10 sessions")


def test_bench_progress_on_a_terminal_updates_one_line():
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    stream = Terminal()
    progress = Progress(stream)
    progress.show("logins 1")
    progress.show("logins 2")
    progress.done()
    assert stream.getvalue().count("\r") >= 3 and "\n" not in stream.getvalue()
