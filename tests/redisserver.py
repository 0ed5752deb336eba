"""The tests' redis-server: ``gamesession.bench.redisproc`` (bench cluster uses the same one)."""

from gamesession.bench.redisproc import RedisServer, have_redis, make_certificates  # noqa: F401
