"""``gamesession status``: a short human summary of a server's ``/metrics``.

Fetches the Prometheus text the server serves with ``--metrics``, parses it
with prometheus_client's parser and prints a few lines: sessions, logins,
traffic, drops by reason, RTT.  No Prometheus server needed.
"""

import http.client
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

P = "gamesession_"


class StatusError(Exception):
    """The figures could not be fetched or are not a gamesession server's."""


def metrics_url(url: str) -> str:
    """``URL`` as given, with ``/metrics`` added when it has no path."""
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urllib.parse.urlunsplit(parts)


NOT_METRICS = "(is the server running with --metrics, and is this its --metrics port?)"


def fetch(url: str, timeout: float = 5.0) -> str:
    """The text at ``url``; StatusError for every way that can fail."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        raise StatusError("{} answered HTTP {} {}".format(url, e.code, e.reason))
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StatusError("cannot fetch {}: {} {}".format(url, reason, NOT_METRICS))
    except http.client.InvalidURL as e:
        raise StatusError("bad --metrics-url {}: {}".format(url, e))
    except http.client.HTTPException as e:
        raise StatusError("{} did not answer HTTP ({}: {}) {}".format(
            url, type(e).__name__, str(e).strip()[:60] or "no status line", NOT_METRICS))
    except UnicodeDecodeError:
        raise StatusError("{} answered bytes that are not UTF-8 text {}".format(url, NOT_METRICS))
    except ValueError as e:  # a malformed URL (http.client.InvalidURL, a bad port...)
        raise StatusError("bad --metrics-url {}: {}".format(url, e))


class Figures:
    """Samples of one scrape: ``get(name, **labels)`` and ``by(name, label)``."""

    def __init__(self, text: str):
        self.samples = {}
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    self.samples[key] = sample.value
        except (ValueError, TypeError, IndexError, KeyError) as e:
            raise StatusError("the answer is not Prometheus text ({}): is this the --metrics"
                              " endpoint?".format(e))
        if not any(name.startswith(P) for name, _ in self.samples):
            raise StatusError("no gamesession_ figures in the answer: is this the --metrics endpoint?")

    def get(self, name, default=0.0, **labels):
        return self.samples.get((P + name, tuple(sorted(labels.items()))), default)

    def has(self, name):
        return any(n == P + name for n, _ in self.samples)

    def by(self, name, label):
        """{label value: value} of a labelled figure, non-zero ones only."""
        return {dict(labels)[label]: value for (n, labels), value in self.samples.items()
                if n == P + name and value and label in dict(labels)}

    def buckets(self, name, **match):
        """Sorted (upper bound, cumulative count) of a histogram (of the series with ``match`` labels)."""
        return sorted((float(dict(labels)["le"]), value)
                      for (n, labels), value in self.samples.items()
                      if n == P + name + "_bucket"
                      and all(dict(labels).get(k) == v for k, v in match.items()))

    def labels(self, name) -> dict:
        """The labels of the first sample of ``name`` (an info gauge), or {}."""
        for (n, labels) in self.samples:
            if n == P + name:
                return dict(labels)
        return {}


def quantile(q: float, buckets) -> "float | None":
    """Estimate a quantile like Prometheus' histogram_quantile (linear in a bucket).

    None without samples; the highest finite bound when the quantile falls in +Inf.
    """
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            if cumulative == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


def _n(value) -> str:
    return "{:d}".format(int(value)) if value == int(value) else "{:g}".format(value)


def _bytes(value) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return ("{:.0f} {}" if unit == "B" else "{:.1f} {}").format(value, unit)
        value /= 1000.0


def _breakdown(counts: dict) -> str:
    if not counts:
        return ""
    return " (" + ", ".join("{} {}".format(k, _n(v)) for k, v in sorted(
        counts.items(), key=lambda kv: (-kv[1], kv[0]))) + ")"


def summarize(figures: Figures) -> list:
    """The lines ``gamesession status`` prints."""
    logins = figures.by("logins_total", "outcome")
    ok = logins.pop("ok", 0)
    logouts = figures.by("logouts_total", "reason")
    dropped = figures.by("udp_dropped_total", "reason")
    errors = figures.by("protocol_errors_total", "code")
    suspended = figures.get("sessions_suspended") if figures.has("sessions_suspended") else 0
    lines = [
        "sessions: {} active{} (max {})".format(
            _n(figures.get("sessions_active")),
            ", {} suspended".format(_n(suspended)) if suspended else "",
            _n(figures.get("sessions_max"))),
        "logins: {} ok, {} failed{}".format(_n(ok), _n(sum(logins.values())), _breakdown(logins)),
        "logouts: {}{}".format(_n(sum(logouts.values())), _breakdown(logouts)),
        "tcp: {} connections, {} pending login, {} closed for bad input{}".format(
            _n(figures.get("tcp_connections_total")), _n(figures.get("tcp_pending_login")),
            _n(sum(errors.values())), _breakdown(errors)),
        "udp in: {} datagrams, {}; out: {} datagrams, {}".format(
            _n(figures.get("udp_datagrams_total", direction="in")),
            _bytes(figures.get("udp_bytes_total", direction="in")),
            _n(figures.get("udp_datagrams_total", direction="out")),
            _bytes(figures.get("udp_bytes_total", direction="out"))),
        "dropped: {}{}".format(_n(sum(dropped.values())), _breakdown(dropped)),
    ]
    buckets = figures.buckets("rtt_seconds")
    p50, p90 = quantile(0.5, buckets), quantile(0.9, buckets)
    if p50 is None:
        lines.append("rtt: no keepalive pings answered yet")
    else:
        lines.append("rtt: p50 ~{:.1f} ms, p90 ~{:.1f} ms over {} pings".format(
            p50 * 1000, p90 * 1000, _n(figures.get("rtt_seconds_count"))))
    lines.append("roams: {}".format(_n(figures.get("roams_total"))))
    if figures.has("resumes_total"):
        resumes = figures.by("resumes_total", "outcome")
        resumed = resumes.pop("ok", 0)
        lines.append("resumes: {} ok, {} refused{}".format(
            _n(resumed), _n(sum(resumes.values())), _breakdown({k: v for k, v in resumes.items() if v})))
    if figures.has("rooms_active"):
        limited = figures.by("room_limited_total", "limit")
        lines.append("rooms: {} active, {} members; relayed udp {} in / {} out, tcp {} in / {} out; "
                     "{} limited{}, {} handler errors".format(
                         _n(figures.get("rooms_active")), _n(figures.get("room_members")),
                         _n(figures.get("room_relayed_total", channel="udp", direction="in")),
                         _n(figures.get("room_relayed_total", channel="udp", direction="out")),
                         _n(figures.get("room_relayed_total", channel="tcp", direction="in")),
                         _n(figures.get("room_relayed_total", channel="tcp", direction="out")),
                         _n(sum(limited.values())), _breakdown(limited),
                         _n(sum(figures.by("room_handler_errors_total", "method").values()))))
    if figures.has("cluster_up"):
        lines.append(cluster_line(figures))
    if figures.has("knocks_total"):
        lines.append("knocks: {}, grants {}, connections allowed {} rejected {}".format(
            _n(figures.get("knocks_total")), _n(figures.get("knock_grants_total")),
            _n(figures.get("knock_connections_total", outcome="allowed")),
            _n(figures.get("knock_connections_total", outcome="rejected"))))
    return lines


def cluster_line(figures: Figures) -> str:
    """``cluster: up|DOWN as NODE (DIRECTORY), N users held, ...``."""
    info = figures.labels("cluster_info")
    line = "cluster: {} as {} ({}), {} users held, {} replaced by logins elsewhere".format(
        "up" if figures.get("cluster_up") else "DOWN (logins refused)",
        info.get("node", "?"), info.get("directory", "?"),
        _n(figures.get("cluster_users_held")), _n(figures.get("cluster_replaced_total")))
    claims = figures.buckets("cluster_operation_seconds", operation="claim_user")
    p50 = quantile(0.5, claims)
    if p50 is not None:
        line += ", login claim p50 ~{:.1f} ms".format(p50 * 1000)
    errors = figures.by("cluster_operation_errors_total", "operation")
    if errors:
        line += ", {} failed directory calls".format(_n(sum(errors.values())))
    return line


def status_main(url: str, timeout: float = 5.0, out=print) -> None:
    """Fetch the figures at ``url`` and print the summary; StatusError if that fails."""
    try:
        url = metrics_url(url)
    except ValueError as e:
        raise StatusError("bad --metrics-url {}: {}".format(url, e))
    for line in summarize(Figures(fetch(url, timeout))):
        out(line)
