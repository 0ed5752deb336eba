"""--metrics and --log-summary: option checks and the services they add."""

import pytest
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.web.server import Site

from gamesession.server.tap import Options, makeService


def options(*argv):
    config = Options()
    config.parseOptions(list(argv))
    return config


def build(tmp_path, *argv):
    return makeService(options("--key-file", str(tmp_path / "k.key"), *argv),
                       reactor=MemoryReactorClock())


def test_metrics_off_unless_given(tmp_path):
    config = options()
    assert config["metrics"] is None
    top = build(tmp_path)
    assert top.metrics is None
    assert not any(isinstance(s, StreamServerEndpointService) and isinstance(s.factory, Site)
                   for s in top)


@pytest.mark.parametrize("bad", ["9100", "bogus:1", "tcp:abc", "tcp:9100:color=red"])
def test_bad_metrics_endpoint_is_a_usage_error(bad):
    with pytest.raises(usage.UsageError, match="--metrics"):
        options("--metrics", bad)


def test_metrics_service_serves_the_server_registry(tmp_path):
    top = build(tmp_path, "--metrics", "tcp:9100:interface=127.0.0.1")
    [site] = [s.factory for s in top
              if isinstance(s, StreamServerEndpointService) and isinstance(s.factory, Site)]
    assert site.resource.getStaticEntity(b"metrics") is not None
    top.registry.stats.logins["ok"] += 1
    from prometheus_client import generate_latest
    assert b'gamesession_logins_total{outcome="ok"} 1.0' in generate_latest(top.metrics)


def test_log_summary_period(tmp_path):
    assert options()["log-summary"] == 60
    timers = [s for s in build(tmp_path, "--log-summary", "5") if isinstance(s, TimerService)]
    assert sorted(t.step for t in timers)[-1] == 5
    assert len([s for s in build(tmp_path, "--log-summary", "0") if isinstance(s, TimerService)]) == 1
    with pytest.raises(usage.UsageError):
        options("--log-summary", "-1")


def test_knock_gate_figures_with_metrics(tmp_path):
    top = build(tmp_path, "--metrics", "tcp:9100", "--knock", "7102,7101,7103",
                "--interface", "127.0.0.1")
    knocker = top.login_factory.gate.knocker
    for port in (7102, 7101, 7103):
        knocker.knock("127.0.0.9", port, b"\x00", 0.0)
    top.login_factory.gate.allows("127.0.0.9")
    top.login_factory.gate.allows("127.0.0.8")
    from prometheus_client import generate_latest
    text = generate_latest(top.metrics).decode()
    assert "gamesession_knocks_total 3.0" in text
    assert "gamesession_knock_grants_total 1.0" in text
    assert 'gamesession_knock_connections_total{outcome="rejected"} 1.0' in text
