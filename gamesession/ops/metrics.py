"""Prometheus figures for ``--metrics``, read from ServerStats at scrape time.

The server counts in plain integers (``stats.ServerStats``) on its hot paths;
nothing there calls prometheus_client.  A scrape asks ``ServerCollector`` for
the figures, which copies the counters and turns them into metric families.
Each server builds its own ``CollectorRegistry`` (``make_registry``), so tests
can build as many servers as they like and nothing lands in the global one.

The scrape runs in a thread of the reactor's pool (prometheus_client's
``MetricsResource`` is a WSGI resource), so the collector only takes
snapshots that are atomic under the GIL (``dict(counter)``, ``list(...)``,
single attribute reads) and never iterates a live Counter.

Names and meanings are listed in README.md, "Operations".
"""

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from twisted.web.resource import Resource
from twisted.web.server import Site

from gamesession.server.registry import END_REASONS
from gamesession.protocol.wire import ErrorCode

PREFIX = "gamesession_"

# Label values exported even while still zero, so dashboards and alerts can
# refer to them before the first event.  Reasons added later (by the rate
# limiter, say) are exported as soon as the Counter holds them.
DROP_REASONS = ("short", "unknown_token", "bad_box", "replay", "bad_kind", "rate_limit",
                "send_error", "bad_room_datagram", "room_not_member", "relay_rate")
LOGIN_OUTCOMES = ("ok", "auth_failed", "server_full", "address_full", "already_logged_in",
                  "too_many_attempts", "directory_unavailable", "bad_ticket", "error")
CLUSTER_OPERATIONS = ("heartbeat", "claim_user", "release_user", "restore", "register_room",
                      "update_room", "remove_room", "list_rooms", "reserve_seat",
                      "redeem_ticket", "live_nodes")
RESUME_OUTCOMES = ("ok", "resume_unknown", "resume_expired", "resume_used", "resume_ended",
                   "resume_off", "too_many_attempts")
LIMITS = ("pending_total", "pending_per_address", "pending_per_subnet", "pending_evicted",
          "hello_timeout", "hello_rate", "hello_rate_subnet", "message_rate", "send_buffer")
LOGOUT_REASONS = END_REASONS
# Fatal codes only: the room refusals (460-469) never close a connection.
PROTOCOL_ERRORS = tuple(code.name.lower() for code in ErrorCode if not 460 <= code < 470)
ROOM_JOIN_OUTCOMES = ("created", "joined", "room_not_found", "room_full", "room_refused",
                      "too_many_rooms", "rooms_exhausted", "bad_label", "already_in_room",
                      "bad_room_type", "redirected", "server_full")
ROOM_LEAVE_REASONS = ("left", "logout", "timeout", "kicked", "disconnected", "replaced",
                      "shutdown", "closed", "moved")
ROOM_LIMITS = ("max_rooms", "max_rooms_per_session", "max_room_members", "max_label_bytes",
               "relay_rate", "cluster_pending")
ROOM_RELAYED = (("udp", "in"), ("udp", "out"), ("tcp", "in"), ("tcp", "out"))
KNOCK_CONNECTIONS = {"allowed": "allowed_connections", "rejected": "rejected_connections"}


def _with_zeros(counts: dict, documented) -> list:
    """(label, value) pairs: the documented labels first, then any others."""
    pairs = [(name, counts.get(name, 0)) for name in documented]
    pairs.extend(sorted((k, v) for k, v in counts.items() if k not in documented))
    return pairs


def _labelled_counter(name, documentation, label, counts, documented=()):
    family = CounterMetricFamily(PREFIX + name, documentation, labels=[label])
    for value, count in _with_zeros(counts, documented):
        family.add_metric([str(value)], count)
    return family


def _buckets(histogram, counts):
    """Cumulative (bound, count) pairs of a stats.RttHistogram's ``counts`` snapshot, and the total."""
    buckets, cumulative = [], 0
    for bound, count in zip(histogram.bounds, counts):
        cumulative += count
        buckets.append((repr(float(bound)), cumulative))
    buckets.append(("+Inf", cumulative + counts[-1]))
    return buckets


def _knock_stats(knock):
    """The knock gate's Counter: ``knock.stats``, or its knocker's."""
    stats = getattr(knock, "stats", None)
    if stats is None:
        stats = getattr(getattr(knock, "knocker", None), "stats", None)
    return stats


class ServerCollector:
    """A custom collector over one server's ``SessionRegistry`` and stats.

    ``knock`` is the optional knock gate: any object with a ``stats`` Counter
    (or a ``knocker`` that has one); its counters are exported as
    ``gamesession_knock*``.  ``cluster`` is the optional ``ClusterNode``:
    ``gamesession_cluster*``.
    """

    def __init__(self, registry, knock=None, cluster=None):
        self.registry = registry
        self.knock = knock
        self.cluster = cluster

    def describe(self):
        # The registry learns the names (for ?name[]= filtering) from one collect.
        return list(self.collect())

    def collect(self):
        registry = self.registry
        stats = registry.stats
        dropped = dict(stats.dropped)
        logins = dict(stats.logins)
        logouts = dict(stats.logouts)
        resumes = dict(stats.resumes)
        errors = dict(stats.protocol_errors)
        limited = dict(stats.limited)
        rtt = stats.rtt
        rtt_counts = list(rtt.counts)
        rtt_total = rtt.total

        yield GaugeMetricFamily(PREFIX + "sessions_active", "Sessions logged in now.",
                                value=len(registry.by_token))
        yield GaugeMetricFamily(PREFIX + "sessions_max",
                                "Most sessions allowed at once (--max-sessions).",
                                value=registry.max_sessions)
        yield _labelled_counter("logins", "Login attempts that reached a decision, by outcome.",
                                "outcome", logins, LOGIN_OUTCOMES)
        yield _labelled_counter("logouts", "Sessions ended, by reason.",
                                "reason", logouts, LOGOUT_REASONS)
        yield GaugeMetricFamily(PREFIX + "sessions_suspended",
                                "Sessions whose TCP connection dropped, waiting for a resume "
                                "(--resume-grace); counted in sessions_active too.",
                                value=stats.suspended)
        yield _labelled_counter("resumes", "Resume requests that reached a decision, by outcome.",
                                "outcome", resumes, RESUME_OUTCOMES)

        yield _labelled_counter(
            "udp_datagrams", "UDP datagrams received (in, before any check) and sent (out).",
            "direction", {"in": stats.udp_in_packets, "out": stats.udp_out_packets})
        yield _labelled_counter(
            "udp_bytes", "UDP bytes (whole datagrams) received (in) and sent (out).",
            "direction", {"in": stats.udp_in_bytes, "out": stats.udp_out_bytes})
        yield _labelled_counter("udp_dropped", "UDP datagrams dropped without an answer, by reason.",
                                "reason", dropped, DROP_REASONS)

        yield CounterMetricFamily(PREFIX + "tcp_connections",
                                  "TCP connections accepted by the login service.",
                                  value=stats.tcp_connections)
        yield GaugeMetricFamily(PREFIX + "tcp_pending_login",
                                "TCP connections open that have not logged in yet.",
                                value=stats.tcp_pending_login)
        yield _labelled_counter("protocol_errors",
                                "TCP connections closed for bad input, by error code name.",
                                "code", errors, PROTOCOL_ERRORS)
        yield _labelled_counter("limited",
                                "TCP connections refused or cut by a limit, by limit.",
                                "limit", limited, LIMITS)
        yield CounterMetricFamily(PREFIX + "roams",
                                  "Sessions whose UDP address moved (NAT rebinding, network change).",
                                  value=stats.roams)

        yield HistogramMetricFamily(
            PREFIX + "rtt_seconds", "Round trip of the server's keepalive pings to clients.",
            buckets=_buckets(rtt, rtt_counts), sum_value=rtt_total)
        stalls = stats.stalls
        yield HistogramMetricFamily(
            PREFIX + "reactor_stall_seconds",
            "How late the --stall-probe timer fired: how long the reactor was held.",
            buckets=_buckets(stalls, list(stalls.counts)), sum_value=stalls.total)
        yield GaugeMetricFamily(PREFIX + "reactor_stall_max_seconds",
                                "Longest reactor stall seen by --stall-probe since start.",
                                value=stats.max_stall)

        yield from _room_families(registry.rooms, stats.rooms)

        knock_stats = _knock_stats(self.knock)
        if knock_stats is not None:
            yield from self._knock(dict(knock_stats))
        if self.cluster is not None:
            yield from self._cluster(self.cluster)

    @staticmethod
    def _cluster(node):
        from gamesession.cluster.node import OPERATION_BOUNDS
        from gamesession.ops.stats import RttHistogram

        info = GaugeMetricFamily(PREFIX + "cluster_info",
                                 "This node's name and directory (value 1).",
                                 labels=["node", "directory"])
        info.add_metric([node.name, node.label], 1)
        yield info
        yield GaugeMetricFamily(PREFIX + "cluster_up",
                                "1 while the cluster directory answers, else 0.",
                                value=1 if node.up else 0)
        yield GaugeMetricFamily(PREFIX + "cluster_users_held",
                                "Users this node holds in the directory.", value=len(node.held))
        yield CounterMetricFamily(PREFIX + "cluster_replaced",
                                  "Sessions ended here because their user logged in on another node.",
                                  value=node.replaced)
        yield _labelled_counter("cluster_operation_errors",
                                "Directory operations that failed, by operation.",
                                "operation", dict(node.errors), CLUSTER_OPERATIONS)
        timings = dict(node.timings)
        family = HistogramMetricFamily(PREFIX + "cluster_operation_seconds",
                                       "Latency of directory operations, by operation.",
                                       labels=["operation"])
        for operation in sorted(set(timings) | set(CLUSTER_OPERATIONS)):
            histogram = timings.get(operation)
            if histogram is None:
                histogram = RttHistogram(bounds=OPERATION_BOUNDS)
            counts = list(histogram.counts)
            family.add_metric([operation], _buckets(histogram, counts), histogram.total)
        yield family

    @staticmethod
    def _knock(counts):
        yield CounterMetricFamily(PREFIX + "knocks", "Knock datagrams received.",
                                  value=counts.pop("knocks", 0))
        yield CounterMetricFamily(PREFIX + "knock_grants",
                                  "Knock sequences completed: the source may log in for a while.",
                                  value=counts.pop("grants", 0))
        connections = CounterMetricFamily(
            PREFIX + "knock_connections",
            "Login connections the knock gate allowed or rejected.", labels=["outcome"])
        for outcome, key in KNOCK_CONNECTIONS.items():
            connections.add_metric([outcome], counts.pop(key, 0))
        yield connections
        yield _labelled_counter("knock_events",
                                "Other knock gate events (bad_mac, replayed, stale, ...).",
                                "event", counts)


def _room_families(manager, stats):
    """The rooms' figures (server/rooms.py), from atomic snapshots."""
    joins = dict(stats.joins)
    leaves = dict(stats.leaves)
    relayed = dict(stats.relayed)
    limited = dict(stats.limited)
    handler_errors = dict(stats.handler_errors)
    yield GaugeMetricFamily(PREFIX + "rooms_active", "Rooms open now (lingering ones included).",
                            value=len(manager.rooms))
    yield GaugeMetricFamily(PREFIX + "room_members", "Room memberships now, over all rooms.",
                            value=manager.member_count)
    yield _labelled_counter("room_joins", "Room joins and creates, by outcome (a refusal's name).",
                            "outcome", joins, ROOM_JOIN_OUTCOMES)
    yield _labelled_counter("room_leaves", "Members gone from rooms, by reason.",
                            "reason", leaves, ROOM_LEAVE_REASONS)
    family = CounterMetricFamily(
        PREFIX + "room_relayed",
        "Room messages (tcp) and datagrams (udp) received from members (in) and copies sent (out).",
        labels=["channel", "direction"])
    for channel, direction in ROOM_RELAYED:
        family.add_metric([channel, direction], relayed.get(channel + "_" + direction, 0))
    yield family
    yield CounterMetricFamily(
        PREFIX + "room_relay_unaddressed",
        "Relayed datagrams not sent: the receiver had no UDP address yet.",
        value=relayed.get("udp_no_address", 0))
    yield _labelled_counter("room_limited", "Room requests refused or relays dropped by a limit, by option.",
                            "limit", limited, ROOM_LIMITS)
    yield _labelled_counter("room_handler_errors", "Room handler methods that raised, by method.",
                            "method", handler_errors)


def make_registry(registry, knock=None, cluster=None) -> CollectorRegistry:
    """A fresh CollectorRegistry holding only this server's figures."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(ServerCollector(registry, knock, cluster))
    return collectors


def make_site(collectors: CollectorRegistry) -> Site:
    """A twisted.web Site serving ``/metrics`` (no access log: scrapes are routine)."""
    from prometheus_client.twisted import MetricsResource  # imports the global reactor

    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=collectors))
    site = MetricsSite(root)
    site.noisy = False
    return site


class MetricsSite(Site):
    """A Site that writes no access log line per request."""

    def log(self, request):
        pass
