"""A loopback TCP proxy that can cut its connections: a reset, or a silent black-hole.

Threads and plain sockets, so it works beside a running reactor and beside
subprocesses alike.  Only ever listens on and connects to 127.0.0.1.

    proxy = CuttingProxy(target_port)
    proxy.cut("rst")               # every open connection: RST to both sides
    proxy.cut("blackhole", 3.0)    # drop every byte both ways for 3 s, then RST
    proxy.cut_later(2.5, "rst")    # the same, 2.5 s after the first connection
    proxy.close()
"""

import selectors
import socket
import struct
import threading
import time


def _reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class _Link:
    def __init__(self, client, server):
        self.client = client
        self.server = server
        self.blackholed = False
        self.closed = False
        self.opened_at = time.monotonic()
        self.cut_at = None

    def reset(self):
        if not self.closed:
            self.closed = True
            _reset(self.client)
            _reset(self.server)


class CuttingProxy:
    def __init__(self, target_port: int, lifetime: float = 60.0):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.links = []
        self.accepted = 0
        # While True, new connections are reset at once (the server "unreachable").
        self.refusing = False
        self.stopped = False
        self.deadline = time.monotonic() + lifetime  # every thread ends by then
        self._pending_cut = None
        self.lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while not self.stopped and time.monotonic() < self.deadline:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.refusing:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(client)
                continue
            link = _Link(client, server)
            with self.lock:
                self.links.append(link)
                first = len(self.links) == 1
            if first and self._pending_cut is not None:
                delay, mode, hold = self._pending_cut
                threading.Timer(delay, self.cut, (mode, hold)).start()
            threading.Thread(target=self._pump, args=(link,), daemon=True).start()

    def _pump(self, link):
        selector = selectors.DefaultSelector()
        selector.register(link.client, selectors.EVENT_READ, link.server)
        selector.register(link.server, selectors.EVENT_READ, link.client)
        try:
            while not link.closed and not self.stopped and time.monotonic() < self.deadline:
                if not selector.get_map():
                    time.sleep(0.1)
                    continue
                for key, _ in selector.select(0.1):
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if link.blackholed:
                        # A dead path: bytes vanish and a close reaches nobody.
                        if not data:
                            selector.unregister(key.fileobj)
                        continue
                    if not data:
                        link.reset()
                        return
                    try:
                        key.data.sendall(data)
                    except OSError:
                        link.reset()
                        return
        finally:
            selector.close()
            link.reset()

    @property
    def open_links(self):
        with self.lock:
            return [link for link in self.links if not link.closed]

    def cut(self, mode: str = "rst", hold: float = 3.0) -> None:
        """Cut every open connection now: ``rst``, or ``blackhole`` for ``hold`` seconds then RST."""
        for link in self.open_links:
            link.cut_at = time.monotonic()
            if mode == "rst":
                link.reset()
            else:
                link.blackholed = True
                threading.Timer(hold, link.reset).start()

    def cut_later(self, delay: float, mode: str = "rst", hold: float = 3.0) -> None:
        """Cut the connections ``delay`` seconds after the first one opened."""
        self._pending_cut = (delay, mode, hold)

    def close(self):
        self.stopped = True
        try:
            self.listener.close()
        except OSError:
            pass
        for link in list(self.links):
            link.reset()
