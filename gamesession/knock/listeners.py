"""Twisted side of port knocking: UDP listeners and the periodic summary.

The protocols only hand ``(port, data, address)`` to a
:class:`gamesession.knock.rule.Knocker`, send back the reply it may return, and
pass grants on to the optional kernel gate.  Nothing is logged per packet:
a :class:`~twisted.application.internet.TimerService` expires old state and
logs what changed since the last summary.
"""

from __future__ import annotations

from typing import Optional

from twisted.application import internet, service
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from gamesession.boundedudp import BoundedUDPServer
from gamesession.knock.rule import KnockGate, Knocker, is_monotonic
from gamesession.ops.stats import changes

DEFAULT_SUMMARY_INTERVAL = 60.0
GRANTS_LOGGED_PER_INTERVAL = 20
# Knocks handled per knock port per reactor turn: a flood on a knock port
# leaves the game port and the timers their turn.
KNOCKS_PER_READ = 32


class KnockProtocol(DatagramProtocol):
    """Listens on one knock port.  Never answers unless the Knocker says so."""

    def __init__(self, port: int, service: "KnockService") -> None:
        self.port = port
        self.service = service

    def datagramReceived(self, data: bytes, addr) -> None:
        result = self.service.knocker.knock(
            addr[0], self.port, data, self.service.clock.seconds()
        )
        if result.reply is not None:
            self.transport.write(result.reply, addr)
        if result.granted is not None:
            self.service.granted(result.granted)


class KnockService(service.MultiService):
    """UDP listeners on every knock port, the kernel gate, the summary timer.

    ``gate`` is what the login factory consults.  ``firewall``, when given,
    is a service (see :mod:`gamesession.knock.firewall`) with ``grant(host,
    seconds)``; it is started before the listeners and stopped after them.
    """

    log = Logger()

    def __init__(
        self,
        knocker: Knocker,
        interface: str = "",
        clock=None,
        firewall: Optional[service.IService] = None,
        summary_interval: float = DEFAULT_SUMMARY_INTERVAL,
    ) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.knocker = knocker
        self.clock = clock
        self.firewall = firewall
        self.gate = KnockGate(knocker, clock)
        self.protocols = {}
        self._reported: dict = {}
        self._grants_logged = 0
        if firewall is not None:
            firewall.setServiceParent(self)
        for port in knocker.sequence:
            proto = KnockProtocol(port, self)
            self.protocols[port] = proto
            server = BoundedUDPServer(port, proto, interface=interface, reactor=clock,
                                      max_datagrams=KNOCKS_PER_READ)
            server.setServiceParent(self)
        # Expiry runs at least once per window so tables shrink between summaries.
        tick = min(summary_interval, max(knocker.progress.window, 1.0))
        self._summary_every = max(1, round(summary_interval / tick))
        self._ticks = 0
        timer = internet.TimerService(tick, self.tick)
        timer.clock = clock
        timer.setServiceParent(self)

    def startService(self) -> None:
        self.log.info(
            "knock: login gated behind {count} {mode} UDP knocks; window {window}s,"
            " grant {grant}s",
            count=len(self.knocker.sequence),
            mode="classic" if self.knocker.secret is None else "authenticated",
            window=self.knocker.progress.window,
            grant=self.knocker.grant_seconds,
        )
        if is_monotonic(self.knocker.sequence):
            self.log.warn(
                "knock: sequence {ports} is sorted; a UDP port sweep knocks it by"
                " accident. Use an unsorted order or --knock-random.",
                ports=",".join(map(str, self.knocker.sequence)),
            )
        super().startService()

    def granted(self, host: str) -> None:
        if self.firewall is not None:
            self.firewall.grant(host, self.knocker.grant_seconds)
        if self._grants_logged < GRANTS_LOGGED_PER_INTERVAL:
            self._grants_logged += 1
            self.log.info(
                "knock: granted {host} for {seconds}s",
                host=host,
                seconds=self.knocker.grant_seconds,
            )

    def tick(self) -> None:
        self.knocker.expire(self.clock.seconds())
        self._ticks += 1
        if self._ticks >= self._summary_every:
            self._ticks = 0
            self.summarize()

    def summarize(self) -> None:
        """Log counts since the last summary, if anything happened."""
        stats = self.knocker.stats
        delta = changes(stats, self._reported)
        self._reported = dict(stats)
        unlogged = delta.get("grants", 0) - self._grants_logged
        self._grants_logged = 0
        if not delta:
            return
        self.log.info(
            "knock summary: {knocks} knocks, {grants} grants ({unlogged} not logged"
            " singly), {rejected} connections rejected; {tracked} addresses in"
            " progress, {granted} granted",
            knocks=delta.get("knocks", 0),
            grants=delta.get("grants", 0),
            unlogged=max(unlogged, 0),
            rejected=delta.get("rejected_connections", 0),
            tracked=len(self.knocker.progress),
            granted=len(self.knocker.grants),
            counts=delta,
        )

    def stopService(self):
        d = super().stopService()
        self.summarize()
        return d


def makeKnockService(knocker: Knocker, **kwargs) -> KnockService:
    """The service a tap adds to its MultiService; ``.gate`` goes to login.

    Keyword arguments are those of :class:`KnockService`.
    """
    return KnockService(knocker, **kwargs)
