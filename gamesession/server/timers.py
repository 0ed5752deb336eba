"""Deadline buckets: items filed under the time they are next due, taken out in bounded steps.

The registry files each session under the moment its next timer check is
due (the end of its keepalive interval or of its timeout, whichever comes
first).  A check looks at the sessions of the buckets that are due, not at
every session, so timer work grows with the sessions that are due, and a
step takes out at most ``limit`` items, so no step blocks the reactor for
long.  No Twisted here: time is a number the caller passes.
"""

import math

#: Bucket quotients within this of a whole number count as that number, so a
#: deadline equal to the clock is due however the two divisions round
#: (5.1 / 0.05 is 101.99999999999999).
_ROUNDING = 1e-9


class DeadlineWheel:
    """Buckets of ``resolution`` seconds; an item is filed in exactly one bucket at a time.

    Items are never looked up or removed: the owner files an item again when
    it takes it out and it is still live, and skips it when it is not.
    """

    def __init__(self, resolution: float):
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self.resolution = resolution
        self._buckets = {}
        self._next = None  # the lowest filled bucket index (None: all empty)
        self._filed = 0

    def __len__(self):
        return self._filed

    def _index(self, when: float) -> int:
        """The last bucket due at ``when`` (with ``_first_index``: one rounding, both ways)."""
        return math.floor(when / self.resolution + _ROUNDING)

    def _first_index(self, when: float) -> int:
        """The first bucket taken out at or after ``when``."""
        return math.ceil(when / self.resolution - _ROUNDING)

    def add(self, item, when: float, now: "float | None" = None) -> None:
        """File ``item`` under ``when`` (never under a bucket already taken at ``now``).

        Bucket ``k`` is taken out once ``now >= k * resolution``; an item goes
        to the first bucket taken out at or after ``when``, so it is due when
        it comes out, at most one ``resolution`` late.
        """
        index = self._first_index(when)
        if now is not None:
            index = max(index, self._index(now) + 1)
        bucket = self._buckets.get(index)
        if bucket is None:
            self._buckets[index] = [item]
        else:
            bucket.append(item)
        self._filed += 1
        if self._next is None or index < self._next:
            self._next = index

    def due(self, now: float, limit: int) -> list:
        """Take out up to ``limit`` items from the buckets due at ``now``, earliest first."""
        out = []
        if self._next is None:
            return out
        last = self._index(now)
        buckets = self._buckets
        index = self._next
        if last - index > 4 * len(buckets):
            # The clock jumped far ahead: visit the filled buckets, not every index.
            indexes = sorted(i for i in buckets if i <= last)
        else:
            indexes = range(index, last + 1)
        for index in indexes:
            bucket = buckets.get(index)
            if bucket is None:
                continue
            room = limit - len(out)
            if len(bucket) <= room:
                out.extend(bucket)
                del buckets[index]
            else:
                out.extend(bucket[:room])
                del bucket[:room]
                self._next = index
                self._filed -= len(out)
                return out
            if len(out) >= limit:
                break
        self._filed -= len(out)
        self._next = min(buckets) if buckets else None
        return out

    def pending(self, now: float) -> bool:
        """True if some bucket is due at ``now``."""
        return self._next is not None and self._next <= self._index(now)

