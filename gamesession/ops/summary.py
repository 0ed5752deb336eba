"""Periodic log summaries of dropped datagrams (``--log-summary SECONDS``).

Drops are never logged one by one: a flood of junk would become a flood of
log lines.  Instead a TimerService calls ``DropSummary.tick`` every period,
and it logs one structured event with the counts by reason since the last
summary, only when they changed.  A quiet server logs nothing.
"""

from twisted.logger import Logger

from gamesession.ops.stats import changes


class DropSummary:
    log = Logger()

    def __init__(self, stats, period: float):
        self.stats = stats
        self.period = period
        self.last = {}

    def tick(self) -> None:
        totals = dict(self.stats.dropped)
        dropped = changes(totals, self.last)
        self.last = totals
        if not dropped:
            return
        self.log.info(
            "dropped {count} datagrams in the last {period:g}s: {counts}",
            event="drops_summary", count=sum(dropped.values()), period=self.period,
            dropped=dropped, totals=totals,
            counts=", ".join("{} {}".format(reason, n) for reason, n in dropped.items()),
        )
