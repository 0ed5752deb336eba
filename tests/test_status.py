"""``gamesession status``: parsing a canned scrape, the quantile estimate, the URL."""

import pytest

from gamesession.client.status import Figures, StatusError, metrics_url, quantile, summarize

SCRAPE = """\
# HELP gamesession_sessions_active Sessions logged in now.
# TYPE gamesession_sessions_active gauge
gamesession_sessions_active 3.0
# TYPE gamesession_sessions_max gauge
gamesession_sessions_max 10000.0
# TYPE gamesession_logins_total counter
gamesession_logins_total{outcome="ok"} 7.0
gamesession_logins_total{outcome="auth_failed"} 2.0
gamesession_logins_total{outcome="server_full"} 0.0
gamesession_logins_total{outcome="already_logged_in"} 1.0
# TYPE gamesession_logouts_total counter
gamesession_logouts_total{reason="logout"} 3.0
gamesession_logouts_total{reason="timeout"} 1.0
gamesession_logouts_total{reason="kicked"} 0.0
# TYPE gamesession_udp_datagrams_total counter
gamesession_udp_datagrams_total{direction="in"} 1500.0
gamesession_udp_datagrams_total{direction="out"} 1400.0
# TYPE gamesession_udp_bytes_total counter
gamesession_udp_bytes_total{direction="in"} 90000.0
gamesession_udp_bytes_total{direction="out"} 512.0
# TYPE gamesession_udp_dropped_total counter
gamesession_udp_dropped_total{reason="short"} 4.0
gamesession_udp_dropped_total{reason="unknown_token"} 40.0
gamesession_udp_dropped_total{reason="bad_box"} 0.0
# TYPE gamesession_tcp_connections_total counter
gamesession_tcp_connections_total 12.0
# TYPE gamesession_tcp_pending_login gauge
gamesession_tcp_pending_login 1.0
# TYPE gamesession_protocol_errors_total counter
gamesession_protocol_errors_total{code="login_timeout"} 1.0
gamesession_protocol_errors_total{code="bad_frame"} 0.0
# TYPE gamesession_roams_total counter
gamesession_roams_total 2.0
# TYPE gamesession_rtt_seconds histogram
gamesession_rtt_seconds_bucket{le="0.001"} 0.0
gamesession_rtt_seconds_bucket{le="0.0025"} 0.0
gamesession_rtt_seconds_bucket{le="0.005"} 4.0
gamesession_rtt_seconds_bucket{le="0.01"} 8.0
gamesession_rtt_seconds_bucket{le="+Inf"} 10.0
gamesession_rtt_seconds_count 10.0
gamesession_rtt_seconds_sum 0.07
"""


def test_summary_of_a_canned_scrape():
    lines = summarize(Figures(SCRAPE))
    assert lines == [
        "sessions: 3 active (max 10000)",
        "logins: 7 ok, 3 failed (auth_failed 2, already_logged_in 1)",
        "logouts: 4 (logout 3, timeout 1)",
        "tcp: 12 connections, 1 pending login, 1 closed for bad input (login_timeout 1)",
        "udp in: 1500 datagrams, 90.0 kB; out: 1400 datagrams, 512 B",
        "dropped: 44 (unknown_token 40, short 4)",
        "rtt: p50 ~6.2 ms, p90 ~10.0 ms over 10 pings",
        "roams: 2",
    ]


def test_suspended_sessions_and_resumes_when_the_server_resumes():
    scrape = SCRAPE + (
        "# TYPE gamesession_sessions_suspended gauge\ngamesession_sessions_suspended 1.0\n"
        "# TYPE gamesession_resumes_total counter\n"
        'gamesession_resumes_total{outcome="ok"} 5.0\n'
        'gamesession_resumes_total{outcome="resume_expired"} 2.0\n'
        'gamesession_resumes_total{outcome="resume_used"} 0.0\n')
    lines = summarize(Figures(scrape))
    assert lines[0] == "sessions: 3 active, 1 suspended (max 10000)"
    assert lines[-1] == "resumes: 5 ok, 2 refused (resume_expired 2)"


def test_knock_line_only_when_the_server_has_a_knock_gate():
    knock = SCRAPE + (
        "# TYPE gamesession_knocks_total counter\ngamesession_knocks_total 9.0\n"
        "# TYPE gamesession_knock_grants_total counter\ngamesession_knock_grants_total 2.0\n"
        "# TYPE gamesession_knock_connections_total counter\n"
        'gamesession_knock_connections_total{outcome="allowed"} 2.0\n'
        'gamesession_knock_connections_total{outcome="rejected"} 5.0\n')
    assert summarize(Figures(knock))[-1] == "knocks: 9, grants 2, connections allowed 2 rejected 5"


def test_no_pings_yet():
    empty = SCRAPE.replace('le="0.005"} 4.0', 'le="0.005"} 0.0').replace(
        'le="0.01"} 8.0', 'le="0.01"} 0.0').replace('le="+Inf"} 10.0', 'le="+Inf"} 0.0')
    assert "rtt: no keepalive pings answered yet" in summarize(Figures(empty))


def test_not_a_gamesession_endpoint():
    with pytest.raises(StatusError, match="no gamesession_ figures"):
        Figures("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.0\n")


@pytest.mark.parametrize("buckets, q, expected", [
    ([(0.01, 0), (float("inf"), 0)], 0.5, None),
    ([(0.01, 10), (float("inf"), 10)], 0.5, 0.005),
    ([(0.01, 0), (0.02, 10), (float("inf"), 10)], 0.5, 0.015),
    ([(0.01, 0), (float("inf"), 4)], 0.5, 0.01),  # all above the last bound
])
def test_quantile_interpolates_like_prometheus(buckets, q, expected):
    assert quantile(q, buckets) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("given, url", [
    ("127.0.0.1:9100", "http://127.0.0.1:9100/metrics"),
    ("http://127.0.0.1:9100/", "http://127.0.0.1:9100/metrics"),
    ("http://h:9100/metrics", "http://h:9100/metrics"),
    ("https://h/custom/path", "https://h/custom/path"),
])
def test_metrics_url(given, url):
    assert metrics_url(given) == url
