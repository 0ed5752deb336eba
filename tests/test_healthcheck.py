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


# -- behind a knock gate (issue 12 item 16) ----------------------------------------


def knock_ports(n=3):
    from conftest import free_port
    return ",".join(str(free_port(socket.SOCK_DGRAM)) for _ in range(n))


def knock_connections(metrics_port):
    """{outcome: count} of the server's knock_connections_total figure."""
    from gamesession.client.status import Figures, fetch
    figures = Figures(fetch("http://127.0.0.1:{}/metrics".format(metrics_port)))
    return {outcome: figures.get("knock_connections_total", outcome=outcome)
            for outcome in ("allowed", "rejected")}


def test_knocking_health_check_passes_the_gate(start_server, plugin_path, tmp_path):
    from conftest import free_port
    sequence, metrics_port = knock_ports(), free_port()
    server = start_server("--knock", sequence,
                          "--metrics", "tcp:{}:interface=127.0.0.1".format(metrics_port))
    before = knock_connections(metrics_port)  # the fixture's own probe was rejected
    # Without knocking the gate refuses the connection: unhealthy, counted as rejected.
    plain = healthcheck(plugin_path, server.login_port)
    assert plain.returncode == 1 and "pass --knock" in plain.stderr, plain.stderr
    after = knock_connections(metrics_port)
    assert (after["allowed"], after["rejected"]) == (before["allowed"], before["rejected"] + 1)
    knocked = healthcheck(plugin_path, server.login_port, "--knock", sequence)
    assert knocked.returncode == 0, knocked.stderr
    last = knock_connections(metrics_port)
    assert (last["allowed"], last["rejected"]) == (after["allowed"] + 1, after["rejected"])
    assert "Traceback" not in server.log()


def test_authenticated_knocks(start_server, plugin_path, tmp_path):
    secret = str(tmp_path / "knock.secret")
    assert run_cli(plugin_path, "knock-secret", "--file", secret).returncode == 0
    sequence = knock_ports()
    server = start_server("--knock", sequence, "--knock-secret", secret)
    assert healthcheck(plugin_path, server.login_port, "--knock", sequence).returncode == 1
    result = healthcheck(plugin_path, server.login_port, "--knock", sequence,
                         "--knock-secret", secret)
    assert result.returncode == 0, result.stderr


def image_healthcheck_command():
    """The shell command of the Dockerfile's HEALTHCHECK CMD."""
    from test_docker_compose import dockerfile_instructions
    [healthcheck] = [rest for name, rest in dockerfile_instructions() if name == "HEALTHCHECK"]
    return healthcheck.split(" CMD ", 1)[1]


def run_image_healthcheck(plugin_path, tmp_path, env):
    """The HEALTHCHECK command as Docker runs it (``/bin/sh -c``), ``gamesession`` on PATH."""
    import os
    import subprocess
    import sys

    from conftest import child_env

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "gamesession"
    shim.write_text('#!/bin/sh\nexec "{}" -c "import sys; from gamesession.client.cli import main;'
                    ' sys.exit(main())" "$@"\n'.format(sys.executable))
    shim.chmod(0o755)
    full_env = {k: v for k, v in child_env(plugin_path).items()
                if not k.startswith("GAMESESSION_")}
    full_env.update(env)
    full_env["PATH"] = "{}:{}".format(bin_dir, os.environ.get("PATH", "/usr/bin:/bin"))
    return subprocess.run(["/bin/sh", "-c", image_healthcheck_command()], env=full_env,
                          capture_output=True, text=True, timeout=30)


def test_the_image_health_check_knocks_when_the_container_does(start_server, plugin_path,
                                                                tmp_path):
    sequence = knock_ports()
    gated = start_server("--knock", sequence)
    env = {"GAMESESSION_LOGIN_PORT": str(gated.login_port), "GAMESESSION_FRAMING": "int16"}
    assert run_image_healthcheck(plugin_path, tmp_path, env).returncode == 1
    result = run_image_healthcheck(plugin_path, tmp_path, dict(env, GAMESESSION_KNOCK=sequence))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet: nothing in `docker inspect` when healthy
    open_server = start_server()
    result = run_image_healthcheck(plugin_path, tmp_path,
                                   {"GAMESESSION_LOGIN_PORT": str(open_server.login_port),
                                    "GAMESESSION_FRAMING": "int16", "GAMESESSION_KNOCK": ""})
    assert result.returncode == 0, result.stderr


def test_the_image_health_check_answers_within_seconds():
    import re
    from test_docker_compose import dockerfile_instructions
    [healthcheck] = [rest for name, rest in dockerfile_instructions() if name == "HEALTHCHECK"]
    options = dict(re.findall(r"--([\w-]+)=(\d+)s", healthcheck.split(" CMD ", 1)[0]))
    assert int(options["interval"]) <= 5  # the first check runs one interval after the start
    assert int(options["start-period"]) >= 10  # a slow first start is not counted as a failure
