"""Event callbacks that lose nothing: events wait in a queue until a handler is set.

A ``GameClient`` declares each kind of event it reports as an ``EventSlot``:

    class GameClient:
        on_message = EventSlot("callable(payload: bytes): an application message")

    client.on_message = handle        # delivers what waited, then each new one
    client._events["on_message"].emit(payload)   # how the client reports one

Until a handler is set, events wait (at most ``MAX_PENDING`` per kind; beyond
that the oldest are dropped and counted in ``EventQueue.overflowed``).  A new
kind of event (room events, resume events...) is one more ``EventSlot`` line.
"""

import collections

#: Events one queue holds while no handler is set; the oldest go beyond it.
MAX_PENDING = 4096


class EventQueue:
    """Calls ``handler(*args)`` for each event; holds events while there is none."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self._handler = None
        self._pending = collections.deque()
        self.max_pending = max_pending
        self.overflowed = 0

    @property
    def handler(self):
        """The callable events go to, or None (then they wait)."""
        return self._handler

    @handler.setter
    def handler(self, handler):
        if handler is not None and not callable(handler):
            raise TypeError("an event handler must be callable, not {!r}".format(handler))
        self._handler = handler
        # Deliver what waited, in order; a handler may unset itself meanwhile.
        while self._handler is not None and self._pending:
            self._handler(*self._pending.popleft())

    def emit(self, *args) -> None:
        """Report one event: to the handler now, or queued until one is set."""
        if self._handler is not None:
            self._handler(*args)
            return
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.overflowed += 1
        self._pending.append(args)

    def __len__(self):
        """How many events wait for a handler."""
        return len(self._pending)


class EventSlot:
    """A class attribute whose value is the handler of one instance's EventQueue.

    The owner keeps its queues in ``self._events`` (a dict, name -> EventQueue,
    made on first use).  Reading gives the handler; setting it delivers what
    waited.
    """

    def __init__(self, doc: str):
        self.__doc__ = doc
        self.name = None

    def __set_name__(self, owner, name):
        self.name = name

    def queue(self, instance) -> EventQueue:
        """The EventQueue of this slot on ``instance``."""
        events = instance.__dict__.setdefault("_events", {})
        if self.name not in events:
            events[self.name] = EventQueue()
        return events[self.name]

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return self.queue(instance).handler

    def __set__(self, instance, handler):
        self.queue(instance).handler = handler

