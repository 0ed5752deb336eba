"""The --cluster options: parsing, defaults, one-line errors; the metrics and status line."""

import socket

import pytest
from prometheus_client import generate_latest
from twisted.internet import task
from twisted.python import usage

from conftest import need_module
from fakes import Harness
from gamesession.client.status import Figures, summarize
from gamesession.cluster import redisdir
from gamesession.cluster.directory import NodeRecord
from gamesession.cluster.memory import InMemoryDirectory
from gamesession.cluster.node import ClusterNode
from gamesession.cluster.options import login_port
from gamesession.cluster.redisdir import RedisAddress, parse_redis_url
from gamesession.ops.metrics import make_registry
from gamesession.server import tap


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def test_no_cluster_by_default():
    options = parse()
    assert options["cluster"] is None and options["cluster-address"] is None


def test_cluster_defaults_name_and_advertise_from_host_and_login_port():
    options = parse("--cluster", "redis://127.0.0.1:6380/2", "--login", "tcp:7100")
    host = socket.gethostname()
    assert options["node-name"] == "{}:7100".format(host)
    assert options["advertise-address"] == (host, 7100)
    assert options["cluster-address"] == RedisAddress("127.0.0.1", 6380, 2)
    assert options["node-ttl"] == 5.0


def test_advertise_and_name_given():
    options = parse("--cluster", "redis://127.0.0.1", "--node-name", "eu-1",
                    "--advertise", "play.example.test:17000", "--login", "tcp:7000:interface=0.0.0.0")
    assert options["node-name"] == "eu-1"
    assert options["advertise-address"] == ("play.example.test", 17000)


def test_password_file_wins_over_the_url(tmp_path):
    secret = tmp_path / "redis.pw"
    secret.write_text("s3cret\n")
    options = parse("--cluster", "rediss://game:old@127.0.0.1:6390/1",
                    "--cluster-password-file", str(secret))
    address = options["cluster-address"]
    assert address == RedisAddress("127.0.0.1", 6390, 1, tls=True, username="game",
                                   password="s3cret")
    assert "s3cret" not in repr(address) and "s3cret" not in str(address)
    assert str(address) == "rediss://127.0.0.1:6390/1"


@pytest.mark.parametrize("argv, message", [
    (["--cluster", "http://127.0.0.1"], "--cluster: expected redis://"),
    (["--cluster", "redis://127.0.0.1/zero"], "database number"),
    (["--cluster", "redis://127.0.0.1:99999"], "bad port"),
    (["--cluster", "redis://"], "no host"),
    (["--cluster", "redis://127.0.0.1", "--node-name", "a b"], "--node-name"),
    (["--cluster", "redis://127.0.0.1", "--advertise", "h:x"], "--advertise"),
    (["--cluster", "redis://127.0.0.1", "--login", "unix:/tmp/s"], "needs --node-name"),
    (["--cluster", "redis://127.0.0.1", "--cluster-password-file", "/nonexistent/pw"],
     "--cluster-password-file /nonexistent/pw"),
    (["--cluster", "redis://127.0.0.1", "--node-ttl", "0.1"], "at least 0.5 seconds"),
    (["--node-name", "x"], "--node-name needs --cluster"),
    (["--advertise", "x:1"], "--advertise needs --cluster"),
])
def test_bad_cluster_options_are_one_line_usage_errors(argv, message):
    with pytest.raises(usage.UsageError) as info:
        parse(*argv)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_redis_client_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(redisdir, "txredisapi", None)
    with pytest.raises(usage.UsageError) as info:
        parse("--cluster", "redis://127.0.0.1")
    assert str(info.value) == redisdir.MISSING_CLIENT


def test_parse_redis_url_user_and_password():
    assert parse_redis_url("redis://:pw@h:1/3") == RedisAddress("h", 1, 3, password="pw")
    assert parse_redis_url("redis://u%40x:p%3A@h") == RedisAddress("h", username="u@x", password="p:")


@pytest.mark.parametrize("endpoint, port", [
    ("tcp:7000", 7000), ("tcp:port=7001:interface=127.0.0.1", 7001),
    ("ssl:7443:privateKey=k.pem", 7443), ("tcp6:7002", 7002), ("unix:/tmp/x", None),
])
def test_login_port_of_an_endpoint(endpoint, port):
    assert login_port(endpoint) == port


def test_make_service_with_cluster_makes_the_node_first(tmp_path):
    need_module("txredisapi")
    from twisted.internet.testing import MemoryReactorClock

    options = parse("--cluster", "redis://127.0.0.1:1/0", "--node-name", "n1",
                    "--key-file", str(tmp_path / "k.key"), "--login", "tcp:7000")
    service = tap.makeService(options, MemoryReactorClock())
    assert service.cluster is list(service)[0]
    assert service.registry.admission is service.cluster
    assert service.cluster.node == NodeRecord("n1", socket.gethostname(), 7000, 7001)


def test_cluster_metrics_and_status_line():
    clock = task.Clock()
    harness = Harness(clock=clock)
    node = ClusterNode(InMemoryDirectory(clock), NodeRecord("node-a"), harness.registry, clock,
                       label="redis://127.0.0.1:6379/0")
    harness.registry.admission = node
    node.startService()
    harness.logged_in("alice")
    collectors = make_registry(harness.registry, cluster=node)
    figures = Figures(generate_latest(collectors).decode())
    assert figures.get("cluster_up") == 1
    assert figures.get("cluster_users_held") == 1
    assert figures.get("cluster_operation_seconds_count", operation="claim_user") == 1
    assert figures.get("cluster_operation_seconds_count", operation="release_user") == 0
    assert figures.labels("cluster_info") == {"node": "node-a", "directory": "redis://127.0.0.1:6379/0"}
    [line] = [l for l in summarize(figures) if l.startswith("cluster:")]
    assert line.startswith("cluster: up as node-a (redis://127.0.0.1:6379/0), 1 users held, "
                           "0 replaced by logins elsewhere, login claim p50 ~")
    node.up = False
    figures = Figures(generate_latest(collectors).decode())
    assert figures.get("cluster_up") == 0
    assert "cluster: DOWN (logins refused) as node-a" in "\n".join(summarize(figures))


def test_no_cluster_line_for_a_single_node():
    harness = Harness()
    figures = Figures(generate_latest(make_registry(harness.registry)).decode())
    assert not [l for l in summarize(figures) if l.startswith("cluster")]
