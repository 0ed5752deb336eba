"""Sliding replay window over 64-bit packet counters (RFC 6479 style bitmap).

Sans-I/O.  ``fresh`` is asked before a box is opened; ``mark`` is called only
after it opened, so forged packets can never move the window (netcode.io #86).
"""

WINDOW_SIZE = 1024
# Masks by window size, shared: a 1024-bit int is 160 bytes, per session otherwise.
_MASKS = {}


def _mask(size: int) -> int:
    mask = _MASKS.get(size)
    if mask is None:
        mask = _MASKS[size] = (1 << size) - 1
    return mask


_DEFAULT_MASK = _mask(WINDOW_SIZE)


def fresh(highest: int, bits: int, counter: int, size: int = WINDOW_SIZE) -> bool:
    """True when ``counter`` is new to the window (``highest``, ``bits``) and not too old."""
    if counter > highest:
        return True
    age = highest - counter
    if age >= size:
        return False
    return not (bits >> age) & 1


def mark(highest: int, bits: int, counter: int, size: int = WINDOW_SIZE):
    """``(highest, bits, newest)`` after recording an authenticated ``counter``.

    ``newest`` is True when the counter is the highest yet.  Bit i of ``bits``
    set means counter ``highest - i`` was accepted.
    """
    if counter > highest:
        shift = counter - highest
        if shift >= size:
            return counter, 1, True
        mask = _DEFAULT_MASK if size == WINDOW_SIZE else _mask(size)
        return counter, ((bits << shift) | 1) & mask, True
    return highest, bits | (1 << (highest - counter)), False


class ReplayWindow:
    """Accepts each counter once, within WINDOW_SIZE of the newest seen.

    An object around ``fresh`` and ``mark``; the server's sessions keep the two
    numbers in their own slots instead (``DatagramChannel``).
    """

    __slots__ = ("size", "highest", "bits")

    def __init__(self, size: int = WINDOW_SIZE, highest: int = -1, bits: int = 0):
        self.size = size
        self.highest = highest
        self.bits = bits

    def fresh(self, counter: int) -> bool:
        """True when counter is new and not too old to judge."""
        return fresh(self.highest, self.bits, counter, self.size)

    def mark(self, counter: int) -> bool:
        """Record an authenticated counter; True when it is the newest yet."""
        self.highest, self.bits, newest = mark(self.highest, self.bits, counter, self.size)
        return newest
