"""The UDP game port: moves datagrams between the socket and the registry.

Two ways to run it, with the same behaviour:

* **batched** (the default on Linux): ``BatchedPort`` reads up to
  ``batch`` datagrams with one ``recvmmsg`` call, hands each to the registry,
  and sends the replies they caused with one ``sendmmsg`` call at the end of
  that read batch, so no reply waits past the batch that caused it (a lone
  reply, the usual case at light load, goes with ``sendto``).  A
  datagram sent outside a read batch (a keepalive from a timer, a reply to a
  TCP message) goes out at once with ``sendto``; the copies of a room
  fan-out sent outside one (``send_many``) go out at once in one
  ``sendmmsg``, and so do the datagrams of a room's tick or a sweep's
  keepalives (``sending_together``).
* **plain**: Twisted's own ``udp.Port``, one ``recvfrom`` and one ``sendto``
  per datagram.  Used where ``recvmmsg`` is missing, on a reactor without
  file descriptors, or with ``--udp-io plain``.
"""

import socket
from contextlib import contextmanager

from twisted.application import internet
from twisted.internet import udp
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python import log as legacy_log

from gamesession import mmsg
from gamesession.boundedudp import BoundedPort

UDP_IO_CHOICES = ("auto", "batched", "plain")
DEFAULT_BATCH = 64
# --udp-rcvbuf: SO_RCVBUF is a C int.
MAX_RCVBUF = 2**31 - 1


def set_receive_buffer(sock, size: int) -> int:
    """Ask the kernel for a ``size``-byte UDP receive buffer; the size it reports back.

    Linux grants at most ``net.core.rmem_max`` and reports twice what it
    granted (the other half is its bookkeeping), so the figure says whether
    the wish was met.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def batched_io_available(reactor) -> bool:
    """True when ``BatchedPort`` can run on ``reactor`` here (Linux, a real posix reactor)."""
    return mmsg.available() and isinstance(reactor, PosixReactorBase)


def choose_udp_io(wanted: str, reactor) -> str:
    """``"batched"`` or ``"plain"`` for the ``--udp-io`` choice ``wanted``.

    ``auto`` is batched where it can run; ``batched`` where it cannot raises
    ValueError with the reason.
    """
    if wanted not in UDP_IO_CHOICES:
        raise ValueError("--udp-io must be one of " + ", ".join(UDP_IO_CHOICES))
    if wanted == "plain":
        return "plain"
    if batched_io_available(reactor):
        return "batched"
    if wanted == "batched":
        raise ValueError("batched UDP I/O needs recvmmsg/sendmmsg (Linux) and a reactor "
                         "with file descriptors; use --udp-io plain")
    return "plain"


class GamePort(DatagramProtocol):
    """All the work is in ``SessionRegistry.datagram_received``."""

    def __init__(self, registry):
        self.registry = registry

    def startProtocol(self):
        self.registry.transport = self.transport
        # Hot path: one call per datagram instead of two.
        self.datagramReceived = self.registry.datagram_received

    def stopProtocol(self):
        self.registry.transport = None

    def datagramReceived(self, datagram, addr):
        self.registry.datagram_received(datagram, addr)

    def datagrams_not_sent(self, count: int) -> None:
        """A batched send could not send ``count`` queued datagrams."""
        self.registry.stats.dropped["send_error"] += count


class BatchedPort(udp.Port):
    """A ``udp.Port`` that reads with ``recvmmsg`` and writes with ``sendmmsg``.

    ``send(datagram, address)`` is the fast sender (``registry.datagram_sender``
    picks it): inside a read batch it queues, and the queue is flushed when
    the batch has been handled; outside one it sends at once.  ``write``
    keeps ``udp.Port``'s checks for any other caller.
    """

    io = "batched"
    _log = Logger()

    def __init__(self, port, proto, interface="", maxPacketSize=8192, reactor=None,
                 batch=DEFAULT_BATCH, max_batches=4, max_addresses=65536):
        super().__init__(port, proto, interface, maxPacketSize, reactor)
        self.batch = batch
        self.max_batches = max_batches
        self.max_addresses = max_addresses
        self._batch_io = None
        self._queue = []
        self._in_batch = False

    def _bindSocket(self):
        super()._bindSocket()
        self._batch_io = mmsg.AddressedBatch(self.socket, self.batch, self.maxPacketSize,
                                             self.max_addresses)
        self._sendto = self.socket.sendto

    def doRead(self):
        """Read batches until the socket is empty or ``max_batches`` were read.

        The bound keeps one read short (4 x 64 datagrams, about 2 ms of work
        at 64 bytes) so that timers and TCP get their turn under a flood;
        ``udp.Port`` reads up to 256 KB, thousands of datagrams, per call.
        """
        recv = self._batch_io.recv
        self._in_batch = True
        try:
            for _ in range(self.max_batches):
                # An unexpected OSError goes to the reactor, which closes the port, as
                # udp.Port's does; the transient ones (EAGAIN, EINTR, ENOBUFS, ...) read as [].
                datagrams = recv()
                deliver = self.protocol.datagramReceived
                for datagram, address in datagrams:
                    try:
                        deliver(datagram, address)
                    except BaseException:
                        legacy_log.err()
                self.flush()
                if len(datagrams) < self.batch:
                    return
        finally:
            self._in_batch = False
            self.flush()

    def send(self, datagram, address):
        """Send now, or at the end of the current read batch when inside one."""
        if self._in_batch:
            queue = self._queue
            queue.append((datagram, address))
            if len(queue) >= self.batch:
                self.flush()
            return
        try:
            self._sendto(datagram, address)
        except ConnectionRefusedError:
            pass

    def send_many(self, items) -> int:
        """Send ``[(datagram, address), ...]`` together; how many could not be sent now.

        Inside a read batch they join its queue (a failure there is reported
        when the queue is flushed); outside one they go out at once, in one
        ``sendmmsg`` per ``batch`` datagrams: a room fan-out from a timer or a
        handler's tick costs one system call, not one per copy.
        """
        if self._in_batch:
            queue = self._queue
            queue.extend(items)
            if len(queue) >= self.batch:
                self.flush()
            return 0
        return self._batch_io.send(items)

    @contextmanager
    def sending_together(self):
        """Queue what is sent inside the block and send it at its end (``sendmmsg``).

        For work outside a read batch that sends to many (a room's tick sending
        each member its own snapshot, a sweep's keepalives): the datagrams
        leave when the block ends, in the same reactor turn, in one system
        call per ``batch``.  Inside a read batch, or nested, it changes nothing.
        """
        if self._in_batch:
            yield
            return
        self._in_batch = True
        try:
            yield
        finally:
            self._in_batch = False
            self.flush()

    def flush(self):
        """Send the queued datagrams (one ``sendmmsg`` per ``batch``)."""
        queue = self._queue
        if not queue:
            return
        self._queue = []
        failed = self._batch_io.send(queue)
        if failed:
            report = getattr(self.protocol, "datagrams_not_sent", None)
            if report is not None:
                report(failed)

    def connectionLost(self, reason=None):
        self._queue = []
        super().connectionLost(reason)


# Datagrams the plain game port hands on per reactor turn: the batched one's 4 x 64.
PLAIN_DATAGRAMS_PER_READ = 256


class GamePortService(internet.UDPServer):
    """``UDPServer`` for the game port, on the batched or the plain path."""

    def __init__(self, port, protocol, interface="", reactor=None, udp_io="auto", rcvbuf=None):
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(port, protocol, interface=interface, reactor=reactor)
        self.udp_io = choose_udp_io(udp_io, reactor)
        # --udp-rcvbuf: SO_RCVBUF bytes asked for (None: the OS default), and what the kernel gave.
        self.rcvbuf = rcvbuf
        self.rcvbuf_effective = None

    def _getPort(self):
        port_number, protocol = self.args[0], self.args[1]
        interface = self.kwargs.get("interface", "")
        if self.udp_io == "batched":
            port = BatchedPort(port_number, protocol, interface, reactor=self.reactor)
            port.startListening()
            how = "batched: recvmmsg/sendmmsg, up to {} datagrams per call".format(port.batch)
        else:
            if isinstance(self.reactor, PosixReactorBase):
                # udp.Port with a datagram count per read as well as its 256 KiB
                # (zero-length datagrams add no bytes): as bounded as the batched path.
                port = BoundedPort(port_number, protocol, interface, reactor=self.reactor,
                                   max_datagrams=PLAIN_DATAGRAMS_PER_READ)
                port.startListening()
            else:
                port = self.reactor.listenUDP(port_number, protocol, interface=interface)
            how = "plain: Twisted udp.Port, recvfrom/sendto per datagram"
        BatchedPort._log.info("game port UDP {port} I/O {how}", port=port_number, how=how,
                              event="game_port", udp_io=self.udp_io)
        sock = getattr(port, "socket", None)
        if self.rcvbuf is not None and sock is not None:
            self.rcvbuf_effective = set_receive_buffer(sock, self.rcvbuf)
            BatchedPort._log.info(
                "game port UDP {port} receive buffer: {asked} bytes asked for, the kernel reports "
                "{effective} (Linux reports double what it grants, at most net.core.rmem_max)",
                port=port_number, asked=self.rcvbuf, effective=self.rcvbuf_effective,
                event="game_port_rcvbuf")
        return port
