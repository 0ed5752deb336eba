"""Options, makeService and the service's start/stop behaviour, without sockets."""

import os
import stat

import pytest
from twisted.internet import task
from twisted.logger import capturedLogs
from twisted.python import usage

from gamesession.server import tap
from gamesession.server.application import EchoApplication

from fakes import MemoryReactorUDP


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def test_defaults_work_on_a_laptop_and_in_a_container():
    o = parse()
    assert o["login"] == "tcp:7000" and o["udp"] == 7001 and o["interface"] == "0.0.0.0"
    assert o["public-udp-port"] == 7001
    assert o["framing"] == "int16" and o["key-file"] == "gamesession.key"
    assert o["login-timeout"] == 10.0 and o["session-timeout"] == 10.0
    assert o["duplicate-login"] == "kick"
    assert isinstance(o["application"], EchoApplication)
    assert o.get("credCheckers", []) == []


def test_resume_grace_reaches_the_registry(tmp_path):
    assert parse()["resume-grace"] == 20.0
    for argv, grace in [([], 20.0), (["--resume-grace", "0"], 0.0), (["--resume-grace", "2.5"], 2.5)]:
        options = parse("--key-file", str(tmp_path / "k.key"), *argv)
        service = tap.makeService(options, MemoryReactorUDP())
        assert service.registry.resumes.grace == grace
        assert service.registry.resumes.enabled == (grace > 0)


def test_public_udp_port_differs_behind_port_mapping():
    assert parse("--udp", "7001", "--public-udp-port", "17001")["public-udp-port"] == 17001


@pytest.mark.parametrize("argv, message", [
    (["--framing", "xml"], "--framing"),
    (["--duplicate-login", "both"], "--duplicate-login"),
    (["--keepalive", "10", "--session-timeout", "5"], "--keepalive"),
    (["--udp", "70000"], "a port"),
    (["--login-timeout", "0"], "positive"),
    (["--app", "no.such.module"], "--app"),
    (["--app", "os.path"], "lacks"),
    (["--resume-grace", "-1"], "0 or more"),
])
def test_bad_options_are_usage_errors(argv, message):
    with pytest.raises(usage.UsageError) as info:
        parse(*argv)
    assert message in str(info.value)


def test_auth_memory_builds_a_checker():
    from fakes import Harness
    from gamesession.protocol.wire import ErrorCode
    o = parse("--auth", "memory:alice:pw")
    assert len(o["credCheckers"]) == 1
    harness = Harness(checkers=o["credCheckers"])
    _, session = harness.logged_in("alice", "pw")
    assert session.user == "alice"
    refused = [e.code for e in harness.connect().attempt_login("alice", "nope")
               if type(e).__name__ == "LoginFailed"]
    assert refused == [ErrorCode.AUTH_FAILED]


def test_make_service_creates_the_key_and_listens(tmp_path):
    key_file = str(tmp_path / "k.key")
    reactor = MemoryReactorUDP()
    service = tap.makeService(parse("--key-file", key_file, "--login", "tcp:7100",
                                    "--udp", "7101"), reactor)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with capturedLogs() as events:
        service.startService()
    assert [p[0] for p in reactor.tcpServers] == [7100]
    assert [(p[0], p[2]) for p in reactor.udpPorts] == [(7101, "0.0.0.0")]
    texts = [e.get("event") for e in events]
    assert "server_key" in texts and "guest_mode" in texts
    key_event = [e for e in events if e.get("event") == "server_key"][0]
    assert key_event["public_key"] == service.public_key
    # Restarting with the same file keeps the same key.
    again = tap.makeService(parse("--key-file", key_file), MemoryReactorUDP())
    assert again.public_key == service.public_key


def test_no_guest_warning_with_auth(tmp_path):
    service = tap.makeService(parse("--key-file", str(tmp_path / "k"), "--auth", "memory:a:b"),
                              MemoryReactorUDP())
    with capturedLogs() as events:
        service.startService()
    assert "guest_mode" not in [e.get("event") for e in events]


def test_unreadable_key_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(usage.UsageError) as info:
        tap.makeService(parse("--key-file", str(bad)), MemoryReactorUDP())
    assert "bad.key" in str(info.value)


def test_stop_service_notifies_sessions_before_closing(tmp_path):
    from fakes import Harness
    harness = Harness()
    connection, session = harness.logged_in("carol", "")
    clock = task.Clock()
    service = tap.GameSessionService(harness.registry, clock, "pk", guests=True)
    service.startService()
    d = service.stopService()
    assert session.ended == "shutdown"
    assert not d.called
    clock.advance(service.shutdown_grace)
    assert d.called


def test_sigterm_before_the_reactor_runs_becomes_a_clean_stop(monkeypatch):
    """twistd opens the ports before the reactor runs; a SIGTERM then must not kill."""
    import signal

    installed = {}
    monkeypatch.setattr(signal, "getsignal", lambda sig: signal.SIG_DFL)
    monkeypatch.setattr(signal, "signal", lambda sig, handler: installed.setdefault(sig, handler))
    monkeypatch.setattr(tap, "ReactorBase", MemoryReactorUDP)  # stands in for a real reactor
    reactor = MemoryReactorUDP()
    reactor.running = False
    from fakes import Harness
    service = tap.GameSessionService(Harness().registry, reactor, "pk", guests=False)
    service.startService()
    handler = installed[signal.SIGTERM]
    handler(signal.SIGTERM, None)
    # Once running: the startup heap is frozen out of the GC (SECURITY.md, finding 12), then stop.
    assert [call[0] for call in reactor.whenRunningHooks] == [tap.freeze_startup_heap, reactor.stop]


def test_no_early_handler_when_the_reactor_already_runs(monkeypatch):
    import signal

    installed = {}
    monkeypatch.setattr(signal, "signal", lambda sig, handler: installed.setdefault(sig, handler))
    monkeypatch.setattr(tap, "ReactorBase", MemoryReactorUDP)
    reactor = MemoryReactorUDP()
    reactor.running = True
    from fakes import Harness
    tap.GameSessionService(Harness().registry, reactor, "pk", guests=False).startService()
    assert installed == {}


GAME = '''
from gamesession.server.application import EchoApplication


class Game(EchoApplication):
    def session_started(self, session):
        session.send_message(b"hello from mygame")
'''


def write_game(directory, body=GAME, module="server"):
    package = directory / "mygame"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / (module + ".py")).write_text(body)


@pytest.fixture
def in_game_directory(tmp_path, monkeypatch):
    """A fresh directory as the current one, and sys.path/modules restored afterwards."""
    import sys
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path


def test_app_is_found_in_the_current_directory(in_game_directory):
    write_game(in_game_directory)
    assert type(parse("--app", "mygame.server.Game")["application"]).__name__ == "Game"


@pytest.mark.parametrize("body, shown", [
    ("import nosuchdependency\n", "No module named 'nosuchdependency'"),
    ("def broken(:\n", "SyntaxError"),
    ("raise RuntimeError('config missing')\n", "RuntimeError: config missing"),
    ("x = 1\n", "mygame.server has no attribute 'Game'"),
])
def test_app_errors_show_the_underlying_error(in_game_directory, body, shown):
    write_game(in_game_directory, body)
    with pytest.raises(usage.UsageError) as info:
        parse("--app", "mygame.server.Game")
    assert shown in str(info.value)


def test_app_not_found_says_where_it_looked(in_game_directory):
    with pytest.raises(usage.UsageError) as info:
        parse("--app", "nosuchgame.Game")
    assert "no module named 'nosuchgame'" in str(info.value)
    assert "current directory" in str(info.value)
