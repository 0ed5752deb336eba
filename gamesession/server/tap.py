"""``twistd gamesession``: options and the service tree."""

import gc
import signal
import threading

from twisted.application import internet, service
from twisted.application.internet import StreamServerEndpointService
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import endpoints, task
from twisted.internet.base import ReactorBase
from twisted.logger import Logger
from twisted.python import usage

from gamesession.protocol.resume import DEFAULT_RESUME_GRACE
from gamesession.server.accounts import make_portal
from gamesession.server.application import load_application
from gamesession.server.gameport import MAX_RCVBUF, UDP_IO_CHOICES, GamePort, GamePortService
from gamesession.cluster import options as clustertap
from gamesession.keys import KeyFileError, load_or_create_private_key, public_key_text
from gamesession.knock import options as knocktap
from gamesession.server import limits, roomoptions
from gamesession.server.login import LoginFactory
from gamesession.server.registry import SWEEP_STEP, SessionRegistry
from gamesession.ops.stalls import StallProbe
from gamesession.server import gcpolicy
from gamesession.ops.stats import ServerStats
from gamesession.ops.summary import DropSummary

DEFAULT_APP = "gamesession.server.application.EchoApplication"


def _positive(kind):
    def convert(value):
        number = kind(value)
        if number <= 0:
            raise ValueError("must be positive")
        return number
    return convert


def _non_negative(value):
    number = float(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _count(value):
    number = int(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _rcvbuf(value):
    try:
        size = int(value)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_RCVBUF:
        raise ValueError("--udp-rcvbuf must be a number of bytes from 1 to {}".format(MAX_RCVBUF))
    return size


def _port(value):
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError("a port is 0-65535")
    return port


def with_backlog(endpoint: str, backlog: int) -> str:
    """``endpoint`` with ``:backlog=N`` added, for the stream kinds that take one.

    Twisted's own default is 50: a burst of connections (a server restart
    with thousands of players reconnecting) overflows that in milliseconds,
    and every refused SYN costs its client a one-second retransmit.
    """
    kind = endpoint.split(":", 1)[0]
    if kind not in ("tcp", "tcp6", "ssl", "unix"):
        return endpoint
    if any(part.startswith("backlog=") for part in endpoint.split(":")[1:]):
        return endpoint
    return "{}:backlog={}".format(endpoint, backlog)


class Options(roomoptions.RoomOptionsMixin, usage.Options, strcred.AuthOptionMixin):
    synopsis = "[options]"
    longdesc = ("Multiplayer session server: players log in over TCP and exchange "
                "NaCl-secured UDP datagrams bound to their session. See README.md.")
    supportedInterfaces = (IUsernamePassword,)

    optParameters = [
        ["login", None, "tcp:7000", "Endpoint of the TCP login service (e.g. tcp:7000, ssl:7000:...)."],
        ["listen-backlog", None, limits.DEFAULT_LISTEN_BACKLOG,
         "Length of the login port's accept queue (the kernel caps it at net.core.somaxconn); "
         "applied to tcp:/tcp6:/ssl: endpoints that do not set backlog= themselves.",
         _positive(int)],
        ["udp", None, 7001, "UDP game port to listen on.", _port],
        ["interface", None, "0.0.0.0", "Address the UDP game port listens on."],
        ["udp-io", None, "auto",
         "UDP system calls of the game port: batched (recvmmsg/sendmmsg, Linux), plain "
         "(Twisted's udp.Port, one call per datagram) or auto (batched where available)."],
        ["udp-rcvbuf", None, None,
         "SO_RCVBUF of the UDP game port in bytes (default: the OS default); the kernel caps "
         "it at net.core.rmem_max and the log says what it gave.", _rcvbuf],
        ["public-udp-port", None, None,
         "UDP port clients are told to use (default: --udp); set it when a NAT or "
         "docker -p publishes the UDP port under another number.", _port],
        ["framing", None, "int16", "TCP framing: int16 (2-byte length prefix) or line."],
        ["key-file", None, "gamesession.key",
         "The server's private key; created with mode 0600 if missing."],
        ["login-timeout", None, 10.0, "Seconds a connection may take to log in.", _positive(float)],
        ["session-timeout", None, 10.0,
         "Seconds without authenticated traffic after which a session ends.", _positive(float)],
        ["keepalive", None, 2.0, "Seconds of idleness after which a keepalive is sent.", _positive(float)],
        ["max-sessions", None, 10000, "Most sessions at once; further logins are refused.", _positive(int)],
        ["max-sessions-per-address", None, limits.DEFAULT_MAX_SESSIONS_PER_ADDRESS,
         "Most sessions at once from one source address (guests and accounts alike; 0: no limit).",
         _count],
        ["duplicate-login", None, "kick",
         "A second login of a logged-in user: kick (end the old session) or reject (refuse the new one)."],
        ["app", None, DEFAULT_APP,
         "Dotted name of the game application (IGameApplication), e.g. mygame.server.Game; "
         "modules are looked for in the current directory first, then on sys.path."],
        ["metrics", None, None,
         "Endpoint serving Prometheus figures at /metrics, e.g. tcp:9100:interface=127.0.0.1 "
         "(off unless given)."],
        ["log-summary", None, 60.0,
         "Seconds between log summaries of dropped datagrams (only when some were; 0: never).",
         _non_negative],
        # Limits: README.md, "Limits".
        ["max-datagram-rate", None, limits.DEFAULT_DATAGRAM_RATE,
         "Authenticated datagrams per second a session may send; excess is dropped (0: no limit).",
         _non_negative],
        ["datagram-burst", None, None,
         "Datagrams a session may send at once above the rate (default: one second's worth).",
         _positive(float)],
        ["max-pending", None, limits.DEFAULT_MAX_PENDING,
         "Most TCP connections not logged in yet, in total; more are closed at once.",
         _positive(int)],
        ["max-pending-per-address", None, limits.DEFAULT_MAX_PENDING_PER_ADDRESS,
         "Most TCP connections not logged in yet from one source address.", _positive(int)],
        ["max-pending-per-subnet", None, limits.DEFAULT_MAX_PENDING_PER_SUBNET,
         "Most TCP connections not logged in yet from one /24 (IPv4) or /64 (IPv6).",
         _positive(int)],
        ["hello-timeout", None, limits.DEFAULT_HELLO_TIMEOUT,
         "Seconds a new TCP connection has to send its hello (then error 408).", _positive(float)],
        ["hello-rate", None, limits.DEFAULT_HELLO_RATE,
         "Handshakes (hellos) per second one address may start; more get error 429 "
         "before any key work (0: no limit).", _non_negative],
        ["hello-burst", None, limits.DEFAULT_HELLO_BURST,
         "Hellos one address may send at once above --hello-rate (its subnet: 4 times this).",
         _positive(float)],
        ["hello-rate-per-subnet", None, limits.DEFAULT_HELLO_RATE_PER_SUBNET,
         "Hellos per second from one /24 (IPv4) or /64 (IPv6) (0: no limit).", _non_negative],
        ["max-login-failures", None, limits.DEFAULT_MAX_LOGIN_FAILURES,
         "Failed logins from an address after which it must wait (attempts meanwhile get TOO_MANY_ATTEMPTS, 429).",
         _count],
        ["login-backoff", None, limits.DEFAULT_LOGIN_BACKOFF,
         "Seconds an address waits after its first failure over the limit; doubles per failure.",
         _positive(float)],
        ["login-backoff-max", None, limits.DEFAULT_LOGIN_BACKOFF_MAX,
         "Longest wait imposed on an address with failed logins, in seconds.", _positive(float)],
        ["resume-grace", None, DEFAULT_RESUME_GRACE,
         "Seconds a session whose TCP connection dropped stays suspended for a resume "
         "(0: resume off, a dropped connection ends the session).", _non_negative],
        ["max-message-rate", None, limits.DEFAULT_MESSAGE_RATE,
         "TCP messages per second a logged-in session may send; beyond it (after a burst of "
         "2 s worth) the server stops reading its connection until it is back under (0: no limit).",
         _non_negative],
        ["max-message-bytes", None, limits.DEFAULT_MESSAGE_BYTES_RATE,
         "TCP bytes per second a logged-in session may send, enforced the same way (0: no limit).",
         _non_negative],
        ["gc-freeze-interval", None, gcpolicy.DEFAULT_FREEZE_INTERVAL,
         "Every this many seconds, collect the young generations and freeze what survived, so the "
         "garbage collector's automatic full collections walk only what is new (a full collection "
         "of tens of thousands of sessions stalls the server for tens of ms); 0: off, CPython's "
         "own collector.", _non_negative],
        ["gc-full-interval", None, gcpolicy.DEFAULT_FULL_INTERVAL,
         "With --gc-freeze-interval: every this many seconds, one full collection of everything "
         "(frees garbage cycles that died frozen); 0: never.", _non_negative],
        ["max-send-buffer", None, limits.DEFAULT_MAX_SEND_BUFFER,
         "Bytes that may queue for a client that does not read (beyond the transport's own "
         "64 KiB) before it is disconnected.", _positive(int)],
    ] + roomoptions.OPT_PARAMETERS + knocktap.OPT_PARAMETERS + clustertap.OPT_PARAMETERS
    optFlags = knocktap.OPT_FLAGS + [
        ["stall-probe", None,
         "Measure reactor stalls (a timer every 2 ms; figures on --metrics). For benchmarks."],
    ]

    def postOptions(self):
        if self["framing"] not in ("int16", "line"):
            raise usage.UsageError("--framing must be int16 or line")
        if self["udp-io"] not in UDP_IO_CHOICES:
            raise usage.UsageError("--udp-io must be one of " + ", ".join(UDP_IO_CHOICES))
        if self["duplicate-login"] not in ("kick", "reject"):
            raise usage.UsageError("--duplicate-login must be kick or reject")
        if self["keepalive"] >= self["session-timeout"]:
            raise usage.UsageError("--keepalive must be shorter than --session-timeout")
        if self["login-backoff-max"] < self["login-backoff"]:
            raise usage.UsageError("--login-backoff-max must be at least --login-backoff")
        if self["metrics"] is not None:
            try:
                endpoints.serverFromString(None, self["metrics"])
            except (ValueError, TypeError) as e:
                raise usage.UsageError(
                    "--metrics {!r}: {} (expected an endpoint such as tcp:9100 or "
                    "tcp:9100:interface=127.0.0.1)".format(self["metrics"], e))
        knocktap.check_options(self)
        roomoptions.check_options(self)
        if self["public-udp-port"] is None:
            self["public-udp-port"] = self["udp"]
        clustertap.check_options(self)
        try:
            self["application"] = load_application(self["app"])
        except Exception as e:
            raise usage.UsageError("--app {}: {}".format(self["app"], e))


def freeze_startup_heap() -> None:
    """Move everything alive after startup out of the garbage collector's sight.

    A full collection walks every tracked object: Twisted, PyNaCl, cred and
    the plugin system leave some 50,000 behind at startup, which made each
    full collection a pause of tens of milliseconds (more on a busy machine)
    during which the login port accepted nothing; a burst of connections then
    overflowed its accept queue (SECURITY.md, review finding 12).  Frozen
    objects are never collected, so this runs once, after a collection.
    """
    gc.collect()
    gc.freeze()


class GameSessionService(service.MultiService):
    """The server: its listeners, its timers, and a clean shutdown.

    Stopping tells every client the server is shutting down, then gives the
    notices a moment to leave before the listeners and connections close.
    """

    log = Logger()
    shutdown_grace = 0.2

    def __init__(self, registry, reactor, public_key, guests):
        super().__init__()
        self.registry = registry
        self.reactor = reactor
        self.public_key = public_key
        self.guests = guests

    def startService(self):
        self.log.info("server public key: {public_key}", public_key=self.public_key,
                      event="server_key")
        if self.guests:
            self.log.warn("no --auth given: guests may log in under any name without a password",
                          event="guest_mode")
        self._stop_on_early_sigterm()
        super().startService()
        if isinstance(self.reactor, ReactorBase):
            self.reactor.callWhenRunning(freeze_startup_heap)

    def _stop_on_early_sigterm(self):
        """Make a SIGTERM that arrives before the reactor runs a clean stop too.

        twistd starts this service (and opens the ports) before the reactor
        runs and installs its own signal handlers; in that gap SIGTERM would
        kill the process (status 143).  Until then, stop as soon as it runs.
        """
        reactor = self.reactor
        if (not isinstance(reactor, ReactorBase) or reactor.running
                or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
            return
        signal.signal(signal.SIGTERM, self._early_sigterm)

    def _early_sigterm(self, signum, frame):
        self.log.info("SIGTERM before the reactor ran: stopping as soon as it runs")
        self.reactor.callWhenRunning(self.reactor.stop)

    def stopService(self):
        # twistd re-raises a stopping signal at exit (status 143 for SIGTERM).
        # SIGTERM is how docker and systemd stop a server normally, and the
        # shutdown below is clean, so exit 0 instead.
        if getattr(self.reactor, "_exitSignal", None) == signal.SIGTERM:
            self.reactor._exitSignal = None
        self.registry.shutdown()
        d = task.deferLater(self.reactor, self.shutdown_grace, lambda: None)
        d.addCallback(lambda _: super(GameSessionService, self).stopService())
        return d


class SweepService(internet.TimerService):
    """The registry's timer checks, in bounded steps (``SessionRegistry.sweep``).

    Every ``registry.timer_resolution`` seconds it looks at the sessions due
    then, at most ``SWEEP_STEP`` per reactor turn, and goes on in the next
    turn (``callLater(0)``) while some are left, so that timers never hold
    the game port for long.  ``clock`` is the injected ``IReactorTime``.
    """

    def __init__(self, registry, clock, limit=SWEEP_STEP):
        super().__init__(registry.timer_resolution, self._tick)
        self.clock = clock
        self.registry = registry
        self.limit = limit
        self._more = None

    def _tick(self):
        if self._more is None:
            self._step()

    def _step(self):
        self._more = None
        if self.registry.sweep(limit=self.limit):
            self._more = self.clock.callLater(0, self._step)

    def stopService(self):
        if self._more is not None and self._more.active():
            self._more.cancel()
        self._more = None
        return super().stopService()


class StartStopService(service.Service):
    """Runs an object with ``start()`` and ``stop()`` (the stall probe, the GC policy) with the server."""

    def __init__(self, thing):
        self.thing = thing

    def startService(self):
        super().startService()
        self.thing.start()

    def stopService(self):
        self.thing.stop()
        return super().stopService()


def makeService(config, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    try:
        key, created = load_or_create_private_key(config["key-file"])
    except KeyFileError as e:
        raise usage.UsageError(str(e))
    stats = ServerStats()
    registry = SessionRegistry(
        reactor,
        application=config["application"],
        stats=stats,
        session_timeout=config["session-timeout"],
        keepalive=config["keepalive"],
        max_sessions=config["max-sessions"],
        max_sessions_per_address=config["max-sessions-per-address"],
        duplicate_login=config["duplicate-login"],
        datagram_rate=config["max-datagram-rate"],
        datagram_burst=config["datagram-burst"],
        resume_grace=config["resume-grace"],
    )
    roomoptions.make_rooms(config, registry)
    checkers = config.get("credCheckers", [])
    top = GameSessionService(registry, reactor, public_key_text(key), guests=not checkers)
    if created:
        top.log.info("created key file {path}", path=config["key-file"])

    # First child, so it stops last: it deregisters after the sessions ended.
    cluster = clustertap.make_cluster_node(config, registry, reactor)
    if cluster is not None:
        cluster.setServiceParent(top)

    knocking = knocktap.make_knock_service(config, reactor)
    if knocking is not None:
        knocking.setServiceParent(top)  # before the login port opens
    factory = LoginFactory(
        make_portal(checkers), registry, key, config["public-udp-port"], reactor,
        login_timeout=config["login-timeout"], framing=config["framing"],
        limits=limits.Limits(
            pending=limits.PendingLogins(config["max-pending"], config["max-pending-per-address"],
                                         config["max-pending-per-subnet"]),
            hello_timeout=config["hello-timeout"],
            hellos=limits.HelloLimiter(config["hello-rate"], config["hello-burst"],
                                       config["hello-rate-per-subnet"], 4 * config["hello-burst"]),
            attempts=limits.LoginAttempts(config["max-login-failures"], config["login-backoff"],
                                          config["login-backoff-max"]),
            max_send_buffer=config["max-send-buffer"],
            message_rate=config["max-message-rate"],
            message_bytes_rate=config["max-message-bytes"],
        ),
        gate=knocking.gate if knocking is not None else None,
    )
    if cluster is not None:
        clustertap.accept_tickets(cluster, factory.portal)
    login = StreamServerEndpointService(
        endpoints.serverFromString(reactor, with_backlog(config["login"], config["listen-backlog"])),
        factory)
    login._raiseSynchronously = True
    login.setServiceParent(top)

    try:
        udp = GamePortService(config["udp"], GamePort(registry), interface=config["interface"],
                              reactor=reactor, udp_io=config.get("udp-io", "auto"),
                              rcvbuf=config.get("udp-rcvbuf"))
    except ValueError as e:
        raise usage.UsageError(str(e))
    udp.setServiceParent(top)

    SweepService(registry, reactor).setServiceParent(top)

    if config.get("stall-probe"):
        StartStopService(StallProbe(reactor, stats)).setServiceParent(top)

    top.gc_policy = gcpolicy.GarbagePolicy(reactor, config["gc-freeze-interval"],
                                           config["gc-full-interval"], log=GameSessionService.log)
    StartStopService(top.gc_policy).setServiceParent(top)

    if config["log-summary"]:
        drops = internet.TimerService(config["log-summary"],
                                      DropSummary(stats, config["log-summary"]).tick)
        drops.clock = reactor
        drops.setServiceParent(top)

    top.metrics = None
    if config["metrics"]:
        from gamesession.ops.metrics import make_registry, make_site

        top.metrics = make_registry(registry, knock=factory.gate, cluster=cluster)
        metrics = StreamServerEndpointService(
            endpoints.serverFromString(reactor, config["metrics"]), make_site(top.metrics))
        metrics._raiseSynchronously = True
        metrics.setServiceParent(top)

    top.registry = registry
    top.login_factory = factory
    top.cluster = cluster
    return top
