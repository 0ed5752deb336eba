"""Sliding replay window over 64-bit packet counters (RFC 6479 style bitmap).

Sans-I/O.  ``fresh`` is asked before a box is opened; ``mark`` is called only
after it opened, so forged packets can never move the window (netcode.io #86).
"""

WINDOW_SIZE = 1024
# Masks by window size, shared: a 1024-bit int is 160 bytes, per session otherwise.
_MASKS = {}


class ReplayWindow:
    """Accepts each counter once, within WINDOW_SIZE of the newest seen."""

    __slots__ = ("size", "highest", "bits", "_mask")

    def __init__(self, size: int = WINDOW_SIZE):
        self.size = size
        self.highest = -1
        # Bit i set: counter (highest - i) has been accepted.
        self.bits = 0
        mask = _MASKS.get(size)
        if mask is None:
            mask = _MASKS[size] = (1 << size) - 1
        self._mask = mask

    def fresh(self, counter: int) -> bool:
        """True when counter is new and not too old to judge."""
        highest = self.highest
        if counter > highest:
            return True
        age = highest - counter
        if age >= self.size:
            return False
        return not (self.bits >> age) & 1

    def mark(self, counter: int) -> bool:
        """Record an authenticated counter; True when it is the newest yet."""
        highest = self.highest
        if counter > highest:
            shift = counter - highest
            if shift >= self.size:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & self._mask
            self.highest = counter
            return True
        self.bits |= 1 << (highest - counter)
        return False
