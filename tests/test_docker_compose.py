"""The Docker deployment, checked offline (no Docker engine needed).

`docker-compose config` (Debian's docker-compose package) validates and
interpolates docker/docker-compose.yml; the entrypoint runs with stand-ins for
twistd and gamesession to show which options the server would get.  Together
they show that the UDP port published on the host is the one the server
advertises with --public-udp-port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
ENTRYPOINT = DOCKER / "entrypoint.sh"


def _compose_binary() -> str:
    path = shutil.which("docker-compose")
    need(path is not None, "docker-compose is not installed (apt-get install docker-compose)")
    return path


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMESESSION_")}
    env.update(extra)
    return env


def _load_yaml(text: str, compose: str) -> dict:
    """Parse YAML with PyYAML, here or in docker-compose's own interpreter.

    docker-compose v1 is a Python program that needs PyYAML, so its
    interpreter can always parse what it printed.
    """
    try:
        import yaml
    except ImportError:
        with open(compose, "rb") as f:
            shebang = f.readline().decode().strip()
        # PyYAML is in the test extra, so CI never gets here without it.
        need(shebang.startswith("#!") and "python" in shebang,
             "PyYAML is missing and docker-compose is not a Python script (pip install '.[test]')")
        interpreter = shebang[2:].split()
        done = subprocess.run(
            [*interpreter, "-c",
             "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
            input=text, capture_output=True, text=True, timeout=30, check=True,
        )
        return json.loads(done.stdout)
    return yaml.safe_load(text)


def compose_config(tmp_path: Path, env_file: Path | None = None, files=(COMPOSE_FILE,),
                   **env: str) -> dict:
    compose = _compose_binary()
    if env_file is None:
        # an empty env file: a developer's own docker/.env must not leak in
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    done = subprocess.run(
        [compose, "--env-file", str(env_file)]
        + [arg for f in files for arg in ("-f", str(f))] + ["config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=_clean_env(**env),
    )
    assert done.returncode == 0, done.stderr
    return _load_yaml(done.stdout, compose)


def published(service: dict, protocol: str) -> list[tuple[int, int]]:
    """(published, target) pairs for one protocol, from `config` output."""
    pairs = []
    for port in service["ports"]:
        if isinstance(port, str):  # short syntax, e.g. "17001:7001/udp"
            spec, _, proto = port.partition("/")
            host, _, target = spec.rpartition(":")
            port = {"published": host, "target": target, "protocol": proto or "tcp"}
        if port.get("protocol", "tcp") == protocol:
            pairs.append((int(port["published"]), int(port["target"])))
    return pairs


def run_entrypoint(tmp_path: Path, env: dict, *args: str) -> list[str]:
    """Run docker/entrypoint.sh with stand-in commands; return twistd's argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "twistd-args.json"
    fake_twistd = bin_dir / "twistd"
    fake_twistd.write_text(
        "#!{}\nimport json, sys\njson.dump(sys.argv[1:], open({!r}, 'w'))\n".format(
            sys.executable, str(log)
        )
    )
    fake_gamesession = bin_dir / "gamesession"
    fake_gamesession.write_text(
        "#!{}\n".format(sys.executable)
        + "import sys\n"
        "args = sys.argv[1:]\n"
        "path = args[args.index('--key-file') + 1]\n"
        "if args[0] == 'keygen':\n"
        "    assert '--quiet' in args\n"
        "    open(path, 'x').write('secret')\n"
        "    open(path + '.keygens', 'a').write('x')\n"
        "elif args[0] == 'pubkey':\n"
        "    print('PUBKEY')\n"
    )
    for script in (fake_twistd, fake_gamesession):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    full_env = _clean_env(**{k: str(v) for k, v in env.items()})
    full_env["PATH"] = "{}:{}".format(bin_dir, full_env.get("PATH", "/usr/bin:/bin"))
    full_env.setdefault("GAMESESSION_KEY_FILE", str(tmp_path / "data" / "gamesession.key"))
    (tmp_path / "data").mkdir(exist_ok=True)
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        capture_output=True, text=True, timeout=30, env=full_env,
    )
    assert done.returncode == 0, done.stderr
    # The server logs its key itself; the entrypoint adds no copy of it.
    assert "PUBKEY" not in done.stdout
    return json.loads(log.read_text())


def option(argv: list[str], name: str) -> str:
    """The last value given for an option, as usage.Options would take it."""
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]
    assert values, "{} not passed: {}".format(name, argv)
    return values[-1]


def test_compose_file_validates_with_published_ports_that_differ(tmp_path):
    config = compose_config(tmp_path)
    service = config["services"]["gamesession"]
    assert published(service, "tcp") == [(17000, 7000)]
    assert published(service, "udp") == [(17001, 7001)]
    environment = service["environment"]
    assert environment["GAMESESSION_PUBLIC_UDP_PORT"] == "17001"
    assert environment["GAMESESSION_UDP_PORT"] == "7001"
    assert any(v.endswith(":/data:rw") or v.endswith(":/data") for v in service["volumes"])


def test_compose_ports_follow_the_variables(tmp_path):
    config = compose_config(
        tmp_path,
        GAMESESSION_PUBLISHED_UDP_PORT="27001",
        GAMESESSION_UDP_PORT="9001",
        GAMESESSION_PUBLISHED_LOGIN_PORT="27000",
        GAMESESSION_LOGIN_PORT="9000",
    )
    service = config["services"]["gamesession"]
    assert published(service, "udp") == [(27001, 9001)]
    assert published(service, "tcp") == [(27000, 9000)]
    assert service["environment"]["GAMESESSION_PUBLIC_UDP_PORT"] == "27001"


def test_env_example_matches_the_defaults(tmp_path):
    with_example = compose_config(tmp_path, env_file=DOCKER / ".env.example")
    defaults = compose_config(tmp_path)
    assert with_example == defaults


@pytest.mark.parametrize("published_udp", ["17001", "27001"])
def test_server_advertises_the_published_udp_port(tmp_path, published_udp):
    """From the compose file through the entrypoint to twistd's options."""
    service = compose_config(tmp_path, GAMESESSION_PUBLISHED_UDP_PORT=published_udp)[
        "services"
    ]["gamesession"]
    [(host_port, container_port)] = published(service, "udp")
    env = {k: v for k, v in service["environment"].items() if k != "GAMESESSION_KEY_FILE"}
    argv = run_entrypoint(tmp_path, env)
    assert argv[:3] == ["-n", "--pidfile=", "gamesession"]
    assert option(argv, "--public-udp-port") == str(host_port) == published_udp
    assert option(argv, "--udp") == str(container_port)
    [(_, login_target)] = published(service, "tcp")
    assert option(argv, "--login") == "tcp:{}".format(login_target)


def test_entrypoint_defaults_and_optional_settings(tmp_path):
    argv = run_entrypoint(tmp_path, {})
    assert option(argv, "--login") == "tcp:7000"
    assert option(argv, "--udp") == "7001"
    assert option(argv, "--public-udp-port") == "7001"
    assert option(argv, "--interface") == "0.0.0.0"
    assert option(argv, "--framing") == "int16"
    for unset in ("--auth", "--session-timeout", "--max-sessions", "--app"):
        assert unset not in argv

    argv = run_entrypoint(
        tmp_path,
        {
            "GAMESESSION_AUTH": "memory:alice:two words",
            "GAMESESSION_SESSION_TIMEOUT": "20",
            "GAMESESSION_DUPLICATE_LOGIN": "reject",
            "GAMESESSION_EXTRA_ARGS": "--max-sessions 5",
        },
        "--keepalive", "3",
    )
    assert option(argv, "--auth") == "memory:alice:two words"
    assert option(argv, "--session-timeout") == "20"
    assert option(argv, "--duplicate-login") == "reject"
    assert option(argv, "--max-sessions") == "5"
    assert argv[-2:] == ["--keepalive", "3"]


def test_entrypoint_creates_the_key_once(tmp_path):
    key = tmp_path / "data" / "gamesession.key"
    run_entrypoint(tmp_path, {})
    assert key.read_text() == "secret"
    run_entrypoint(tmp_path, {})
    assert (tmp_path / "data" / "gamesession.key.keygens").read_text() == "x"
    assert option(run_entrypoint(tmp_path, {}), "--key-file") == str(key)


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def test_dockerfile_basics():
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, rest in instructions:
        by_name.setdefault(name, []).append(rest)

    assert by_name["FROM"][0].startswith("python:3.11-slim")
    assert any("pip install" in r and "-e " not in r for r in by_name["RUN"])

    users = by_name["USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")

    [healthcheck] = by_name["HEALTHCHECK"]
    assert "CMD" in healthcheck and "gamesession healthcheck" in healthcheck

    exposed = " ".join(by_name["EXPOSE"]).split()
    assert "7001/udp" in exposed
    assert "7000/tcp" in exposed or "7000" in exposed

    assert by_name["STOPSIGNAL"] == ["SIGTERM"]
    assert any("/data" in v for v in by_name["VOLUME"])
    [entrypoint] = by_name["ENTRYPOINT"]
    assert "entrypoint" in entrypoint
    script = ENTRYPOINT.read_text()
    assert 'exec twistd -n --pidfile= gamesession "$@"' in script


# -- the entrypoint with the real server (on loopback, no Docker) ---------------


def _start_container_like(plugin_path, tmp_path, env_vars, run):
    from conftest import child_env

    bin_dir = tmp_path / "realbin"
    bin_dir.mkdir(exist_ok=True)
    shims = {
        "twistd": "from twisted.scripts.twistd import run; run()",
        "gamesession": "import sys; from gamesession.client.cli import main; sys.exit(main())",
    }
    for name, code in shims.items():
        shim = bin_dir / name
        shim.write_text('#!/bin/sh\nexec "{}" -c "{}" "$@"\n'.format(sys.executable, code))
        shim.chmod(0o755)
    env = child_env(plugin_path)
    env = {k: v for k, v in env.items() if not k.startswith("GAMESESSION_")}
    env.update(env_vars)
    env["PATH"] = "{}:{}".format(bin_dir, env.get("PATH", "/usr/bin:/bin"))
    log_path = tmp_path / "container-{}.log".format(run)
    # append mode: the child's writes never overwrite each other
    out = open(log_path, "a")
    proc = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, cwd=str(tmp_path / "data"),
                            stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc, log_path


@pytest.mark.network
@pytest.mark.timeout(90)
def test_entrypoint_runs_the_real_server_and_keeps_its_key(plugin_path, tmp_path):
    """What the container does, minus Docker: key on first start, health, ping, SIGTERM."""
    import time

    from conftest import free_port, run_cli

    (tmp_path / "data").mkdir()
    key_file = tmp_path / "data" / "gamesession.key"
    login_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    env_vars = {
        "GAMESESSION_LOGIN_PORT": str(login_port),
        "GAMESESSION_LOGIN": "tcp:{}:interface=127.0.0.1".format(login_port),
        "GAMESESSION_UDP_PORT": str(udp_port),
        "GAMESESSION_INTERFACE": "127.0.0.1",
        "GAMESESSION_KEY_FILE": str(key_file),
        "GAMESESSION_AUTH": "memory:alice:secret",
    }
    public_keys = []
    for run in range(2):
        proc, log_path = _start_container_like(plugin_path, tmp_path, env_vars, run)
        try:
            deadline = time.monotonic() + 20
            while True:
                health = run_cli(plugin_path, "healthcheck", "--server",
                                 "127.0.0.1:{}".format(login_port), "--timeout", "1")
                if health.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                    break
                time.sleep(0.2)
            assert health.returncode == 0, (health.stderr, log_path.read_text())
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            printed = run_cli(plugin_path, "pubkey", "--key-file", str(key_file)).stdout.strip()
            public_keys.append(printed)
            ping = run_cli(plugin_path, "ping", "--server", "127.0.0.1:{}".format(login_port),
                           "--server-key", printed, "--user", "alice", "--password", "secret",
                           "--count", "2", "--interval", "0.05")
            assert ping.returncode == 0, ping.stderr
            # `docker stop`: SIGTERM to the entrypoint's pid, which is twistd now
            proc.send_signal(15)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log = log_path.read_text()
        assert "server public key: " + printed in log
        assert log.count(printed) == 1, log  # once: keygen and the entrypoint are quiet
        assert ("creating the server key" in log) == (run == 0)
        assert "session started: user=alice" in log
        assert "Traceback" not in log
    assert public_keys[0] == public_keys[1]


def test_knock_override_publishes_every_knock_port(tmp_path):
    """With docker-compose.knock.yml each knock port is published as UDP and passed to --knock."""
    config = compose_config(tmp_path, files=(COMPOSE_FILE, DOCKER / "docker-compose.knock.yml"))
    service = config["services"]["gamesession"]
    udp = dict((target, host) for host, target in published(service, "udp"))
    sequence = [int(p) for p in service["environment"]["GAMESESSION_KNOCK"].split(",")]
    assert sequence == [7102, 7101, 7103]
    assert [udp[port] for port in sequence] == [17102, 17101, 17103]
    assert udp[7001] == 17001 and published(service, "tcp") == [(17000, 7000)]
    argv = run_entrypoint(tmp_path, service["environment"] | {
        "GAMESESSION_KEY_FILE": str(tmp_path / "data" / "k")})
    assert option(argv, "--knock") == "7102,7101,7103"


# -- the build context (.dockerignore, issue 12 item 15) ------------------------


def dockerignore_patterns(path: Path) -> list:
    """(exclude?, regex) per line, as Docker's fileutils.PatternMatcher reads them."""
    import posixpath
    import re

    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        line = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        regex, i = "", 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif line[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif line[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(line[i]), i + 1
        patterns.append((exclude, re.compile(regex + r"\Z")))
    return patterns


def ignored(patterns, path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for exclude, regex in patterns:
        if any(regex.match(c) for c in candidates):
            result = exclude
    return result


def test_the_root_dockerignore_keeps_secrets_and_litter_out_of_every_build():
    # Only the root file: the classic builder and docker-compose 1.29 read no other.
    assert not (DOCKER / "Dockerfile.dockerignore").exists()
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    for path in ("gamesession.key", "data/gamesession.key", "docker/server.key", "knock.secret",
                 "docker/.env", ".env", "docker/prod.env", "users.txt", ".git/HEAD",
                 ".git/objects/ab/cdef", "tests/test_tap.py", "tests/conftest.py",
                 "build/lib/gamesession/keys.py", "gamesession.egg-info/PKG-INFO",
                 "dist/gamesession-0.1.0.tar.gz", "gamesession/__pycache__/keys.cpython-311.pyc",
                 ".ci/run", ".venv/bin/python"):
        assert ignored(patterns, path), path
    # What `pip install .` and the Dockerfile's COPY instructions need.
    for path in ("setup.cfg", "pyproject.toml", "README.md", "gamesession/__init__.py",
                 "gamesession/keys.py", "gamesession/server/tap.py",
                 "twisted_plugins/gamesession_plugin.py", "docker/entrypoint.sh",
                 "docker/Dockerfile"):
        assert not ignored(patterns, path), path


def test_everything_the_package_holds_passes_the_dockerignore():
    import subprocess as sp
    tracked = sp.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    need(tracked.returncode == 0, "not a git checkout (CI runs in a clone)")
    patterns = dockerignore_patterns(ROOT / ".dockerignore")
    for path in tracked.stdout.split():
        if path.startswith(("gamesession/", "twisted_plugins/")) or path in (
                "setup.cfg", "pyproject.toml", "README.md"):
            assert not ignored(patterns, path), path


def test_docker_readme_states_the_measured_source_addresses():
    text = " ".join((DOCKER / "README.md").read_text().split())
    # Measured on Docker 20.10 (issue 12): remote IPv4 keeps its address with the
    # defaults; IPv6 and the host's own clients appear as the bridge gateway.
    assert "| another machine over IPv4 | its real address (kernel DNAT) | its real address |" in text
    assert "another machine over IPv6" in text and "the bridge gateway" in text
    assert "By default Docker may hand published-port traffic" not in text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "must keep source addresses real: disable Docker's userland proxy" not in readme


# -- the cluster: Redis and two nodes ---------------------------------------------

CLUSTER_FILE = DOCKER / "docker-compose.cluster.yml"


def test_cluster_compose_redis_and_two_nodes_with_distinct_ports_and_one_key(tmp_path):
    config = compose_config(tmp_path, files=(CLUSTER_FILE,))
    services = config["services"]
    assert set(services) == {"redis", "keygen", "node-a", "node-b"}
    assert "test" in services["redis"]["healthcheck"]
    assert "ports" not in services["redis"]  # only the nodes reach the directory
    seen_tcp, seen_udp = set(), set()
    for name in ("node-a", "node-b"):
        node = services[name]
        env = node["environment"]
        [(login, login_target)] = published(node, "tcp")
        [(udp, udp_target)] = published(node, "udp")
        assert (login_target, udp_target) == (7000, 7001)
        seen_tcp.add(login), seen_udp.add(udp)
        assert env["GAMESESSION_CLUSTER"] == "redis://redis:6379/0"
        assert env["GAMESESSION_NODE_NAME"] == name
        assert env["GAMESESSION_PUBLIC_UDP_PORT"] == str(udp)
        assert env["GAMESESSION_ADVERTISE"] == "127.0.0.1:{}".format(login)
        assert env["GAMESESSION_KEY_FILE"] == "/data/gamesession.key"
        assert node["volumes"] == ["gamesession-key:/data:ro"]
        assert node["depends_on"] == {"keygen": {"condition": "service_completed_successfully"},
                                      "redis": {"condition": "service_healthy"}}
        assert "gamesession healthcheck" in " ".join(node["healthcheck"]["test"])
    assert len(seen_tcp) == len(seen_udp) == 2 and not seen_tcp & seen_udp
    assert any(v.startswith("gamesession-key:/data") for v in services["keygen"]["volumes"])
    assert "gamesession keygen" in " ".join(services["keygen"]["command"])


def test_cluster_compose_node_options_reach_the_server(tmp_path):
    """compose -> entrypoint -> the options twistd gamesession accepts."""
    from gamesession.server import tap

    config = compose_config(tmp_path, files=(CLUSTER_FILE,), GAMESESSION_PUBLIC_HOST="play.example.test")
    env = dict(config["services"]["node-b"]["environment"])
    env["GAMESESSION_KEY_FILE"] = str(tmp_path / "data" / "gamesession.key")
    argv = run_entrypoint(tmp_path, env)
    assert option(argv, "--cluster") == "redis://redis:6379/0"
    assert option(argv, "--node-name") == "node-b"
    assert option(argv, "--advertise") == "play.example.test:17100"
    options = tap.Options()
    options.parseOptions(argv[3:])
    assert options["advertise-address"] == ("play.example.test", 17100)
    assert options["public-udp-port"] == 17101
