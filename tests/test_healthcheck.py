"""``gamesession healthcheck``: the Docker HEALTHCHECK and monitoring probe."""

import socket

import pytest

from conftest import run_cli

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]


def healthcheck(plugin_path, port, *extra):
    return run_cli(plugin_path, "healthcheck", "--server", "127.0.0.1:{}".format(port),
                   "--timeout", "2", *extra)


def test_healthy_server(start_server, plugin_path):
    server = start_server()
    result = healthcheck(plugin_path, server.login_port)
    assert result.returncode == 0, result.stderr
    assert "answered the hello" in result.stdout
    assert "Traceback" not in server.log()


def test_line_framing(start_server, plugin_path):
    server = start_server("--framing", "line")
    assert healthcheck(plugin_path, server.login_port, "--framing", "line").returncode == 0
    # An int16 hello (no newline) to a line server gets no challenge: it waits.
    wrong = healthcheck(plugin_path, server.login_port)
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr == "gamesession healthcheck: unhealthy: 127.0.0.1:{} did not answer" \
        " within 2 s\n".format(server.login_port)


def test_line_hello_to_an_int16_server(start_server, plugin_path):
    # The int16 server reads '{"' as a length, answers in its own framing and
    # closes: the line client never sees a line.
    server = start_server()
    wrong = healthcheck(plugin_path, server.login_port, "--framing", "line")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.startswith(
        "gamesession healthcheck: unhealthy: the server closed the connection without"
        " answering the hello")
    assert wrong.stderr.count("\n") == 1


def test_nothing_listening(plugin_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = healthcheck(plugin_path, port)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "gamesession healthcheck: unhealthy: connection refused by 127.0.0.1:{}".format(port))


def test_port_open_but_silent(plugin_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        result = healthcheck(plugin_path, s.getsockname()[1])
    assert result.returncode == 1
    assert "did not answer" in result.stderr
