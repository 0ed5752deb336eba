"""Batched UDP system calls: ``recvmmsg``/``sendmmsg`` through ctypes (Linux).

One system call moves a whole batch of datagrams.  Two users share this
module: the server's game port (``gamesession.server.gameport``), on an
unconnected socket that answers many addresses (``AddressedBatch``), and the
benchmark's load generator, on connected sockets (``ConnectedBatch``).

``available()`` says whether this system has the calls.  Where it has not,
``SocketBatch`` does what ``ConnectedBatch`` does with one call per datagram,
and the game port keeps Twisted's ``udp.Port``.  No Twisted in here.
"""

import ctypes
import ctypes.util
import errno
import socket
import struct
import sys

MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)
MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0x20)
_SOCKADDR_SIZE = 128  # sizeof(struct sockaddr_storage)


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IOVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        for name in ("sendmmsg", "recvmmsg"):
            function = getattr(libc, name)
            function.restype = ctypes.c_int
            function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
            if name == "recvmmsg":
                function.argtypes.append(ctypes.c_void_p)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def available() -> bool:
    """True where ``recvmmsg`` and ``sendmmsg`` can be called (Linux with glibc/musl)."""
    return _LIBC is not None


class _Vector:
    """``count`` message headers, each with one ``slot``-byte buffer (and a name slot).

    The fields the loops touch are read and written through flat memoryviews
    (``words`` over the headers, ``iov`` over the iovecs, ``names`` over the
    address slots), so no ctypes proxy object is built per datagram.
    """

    def __init__(self, count, slot, fill, names):
        self.count = count
        self.slot = slot
        self.buffer = ctypes.create_string_buffer(count * slot)
        self.iovecs = (_IOVec * count)()
        self.msgs = (_MMsgHdr * count)()
        self.name_buffer = ctypes.create_string_buffer(count * _SOCKADDR_SIZE) if names else None
        base = ctypes.addressof(self.buffer)
        name_base = ctypes.addressof(self.name_buffer) if names else 0
        for i in range(count):
            self.iovecs[i].iov_base = base + i * slot
            self.iovecs[i].iov_len = fill
            header = self.msgs[i].msg_hdr
            header.msg_iov = ctypes.pointer(self.iovecs[i])
            header.msg_iovlen = 1
            if names:
                header.msg_name = name_base + i * _SOCKADDR_SIZE
                header.msg_namelen = _SOCKADDR_SIZE
        self.view = memoryview(self.buffer).cast("B")
        # iov_len of entry i is size_t number 2*i+1 of the iovec array.
        self.iov = memoryview(self.iovecs).cast("B").cast("N")
        self.step = ctypes.sizeof(_MMsgHdr) // 4
        # 32-bit words of the headers: msg_len and msg_namelen of message i.
        self.words = memoryview(self.msgs).cast("B").cast("I")
        self.len_at = _MMsgHdr.msg_len.offset // 4
        self.namelen_at = _MsgHdr.msg_namelen.offset // 4
        self.flags_at = _MsgHdr.msg_flags.offset // 4
        # 64-bit words of the headers and the iovecs: pointers (msg_name, iov_base).
        self.qwords = memoryview(self.msgs).cast("B").cast("Q")
        self.qstep = ctypes.sizeof(_MMsgHdr) // 8
        self.buffer_base = base
        self.names = memoryview(self.name_buffer).cast("B") if names else None
        # Unsigned 64-bit words of the name slots (16 per slot).
        self.name_words = memoryview(self.name_buffer).cast("B").cast("Q") if names else None
        self.address = ctypes.addressof(self.msgs)
        self.size = ctypes.sizeof(_MMsgHdr)

    def fill_send(self, index, packet):
        offset = index * self.slot
        size = len(packet)
        self.view[offset:offset + size] = packet
        self.iov[2 * index + 1] = size


# -- connected sockets (the load generator) ---------------------------------------


class SocketBatch:
    """One send or recv call per datagram, for systems without sendmmsg."""

    def __init__(self, sock, batch, slot=2048):
        self.sock = sock
        self.batch = batch

    def send(self, packets) -> int:
        send = self.sock.send
        sent = 0
        for packet in packets:
            try:
                send(packet)
            except (BlockingIOError, ConnectionRefusedError):
                break
            sent += 1
        return sent

    def recv(self):
        recv = self.sock.recv
        out = []
        for _ in range(self.batch):
            try:
                out.append(recv(2048))
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                continue
        return out


class ConnectedBatch:
    """sendmmsg/recvmmsg of up to ``batch`` datagrams on a connected, non-blocking socket."""

    def __init__(self, sock, batch, slot=2048):
        self.sock = sock
        self.fd = sock.fileno()
        self.batch = batch
        self.slot = slot
        self._send = _Vector(batch, slot, 0, names=False)
        self._recv = _Vector(batch, slot, slot, names=False)

    def send(self, packets) -> int:
        vector = self._send
        count = len(packets)
        for i, packet in enumerate(packets):
            vector.fill_send(i, packet)
        sent = _LIBC.sendmmsg(self.fd, vector.address, count, 0)
        if sent < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOBUFS):
                return 0
            raise OSError(err, "sendmmsg failed")
        return sent

    def recv(self):
        vector = self._recv
        got = _LIBC.recvmmsg(self.fd, vector.address, self.batch, MSG_DONTWAIT, None)
        if got <= 0:
            if got < 0 and ctypes.get_errno() not in (errno.EAGAIN, errno.ECONNREFUSED):
                raise OSError(ctypes.get_errno(), "recvmmsg failed")
            return []
        view, slot, words, step, at = vector.view, self.slot, vector.words, vector.step, vector.len_at
        return [view[i * slot:i * slot + words[i * step + at]].tobytes() for i in range(got)]


def batcher(sock, batch, slot=2048):
    """The fastest batch I/O this system offers for the connected socket ``sock``."""
    if _LIBC is not None:
        return ConnectedBatch(sock, batch, slot)
    return SocketBatch(sock, batch, slot)


# -- unconnected sockets (the game port) --------------------------------------------

_SOCKADDR_IN = struct.Struct("<H2s4s8x")  # family (native: little-endian Linux), port, address
_SOCKADDR_IN6 = struct.Struct("<H2sI16sI")  # family, port, flowinfo, address, scope id
_BYTES_DATA = sys.getsizeof(b"") - 1  # offset of a bytes object's data from id() in CPython


def _bytes_data_offset():
    """Where a bytes object's data starts, relative to ``id()``: checked, or None."""
    probe = bytes(range(1, 33))
    try:
        if ctypes.string_at(id(probe) + _BYTES_DATA, len(probe)) == probe:
            return _BYTES_DATA
    except Exception:
        pass
    return None


_DATA_OFFSET = _bytes_data_offset() if sys.implementation.name == "cpython" else None


class AddressedBatch:
    """recvmmsg/sendmmsg of up to ``batch`` datagrams on an unconnected UDP socket.

    ``recv()`` returns ``[(datagram, (host, port)), ...]`` with addresses as
    Twisted's ``udp.Port`` gives them (IPv6 reduced to ``(host, port)``);
    ``send(items)`` sends ``[(datagram, address), ...]`` and returns the number
    of datagrams that could not be sent.

    Address objects are cached (raw sockaddr to tuple, tuple to sockaddr), so
    a known peer costs one dict lookup each way; the cache holds at most
    ``max_addresses`` entries and starts over when full, so spoofed source
    addresses cannot grow it.
    """

    def __init__(self, sock, batch=64, slot=8192, max_addresses=65536):
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.batch = batch
        self.slot = slot
        self.max_addresses = max_addresses
        self._recv = _Vector(batch, slot, slot, names=True)
        self._send = _Vector(batch, slot, 0, names=False)
        self._by_raw = {}  # raw sockaddr key -> (host, port)
        self._sockaddr = {}  # (host, port) -> sockaddr bytes
        self.truncated = 0
        self._filled = 0

    # addresses

    def _forget_if_full(self):
        if len(self._sockaddr) >= self.max_addresses:
            self._by_raw.clear()
            self._sockaddr.clear()

    def _received_address(self, index):
        """The (host, port) of received message ``index``: parsed once, then cached."""
        names = self._recv.name_words
        at = index * (_SOCKADDR_SIZE // 8)
        if self.family == socket.AF_INET:
            key = names[at]  # family, port and IPv4 address: one 64-bit word
        else:
            key = (names[at] & 0xFFFFFFFF, names[at + 1], names[at + 2], names[at + 3] >> 32)
        address = self._by_raw.get(key)
        if address is None:
            raw = self._recv.names[index * _SOCKADDR_SIZE:(index + 1) * _SOCKADDR_SIZE]
            if self.family == socket.AF_INET:
                _, port, host = _SOCKADDR_IN.unpack_from(raw)
                address = (socket.inet_ntop(socket.AF_INET, host), int.from_bytes(port, "big"))
                sockaddr = _SOCKADDR_IN.pack(socket.AF_INET, port, host)
            else:
                _, port, _, host, scope = _SOCKADDR_IN6.unpack_from(raw)
                text = socket.inet_ntop(socket.AF_INET6, host)
                if scope:
                    try:
                        text += "%" + socket.if_indextoname(scope)
                    except OSError:
                        pass
                address = (text, int.from_bytes(port, "big"))
                sockaddr = _SOCKADDR_IN6.pack(socket.AF_INET6, port, 0, host, scope)
            self._forget_if_full()
            self._by_raw[key] = address
            self._sockaddr[address] = sockaddr
        return address

    def sockaddr(self, address) -> bytes:
        """The raw sockaddr of ``(host, port)`` (raises OSError/ValueError if it is not one)."""
        raw = self._sockaddr.get(address)
        if raw is None:
            host, port = address[0], address[1]
            if self.family == socket.AF_INET:
                raw = _SOCKADDR_IN.pack(socket.AF_INET, port.to_bytes(2, "big"),
                                        socket.inet_pton(socket.AF_INET, host))
            else:
                host, _, zone = host.partition("%")
                scope = socket.if_nametoindex(zone) if zone else 0
                raw = _SOCKADDR_IN6.pack(socket.AF_INET6, port.to_bytes(2, "big"), 0,
                                         socket.inet_pton(socket.AF_INET6, host), scope)
            self._forget_if_full()
            self._sockaddr[(address[0], address[1])] = raw
        return raw

    # I/O

    def recv(self):
        """The datagrams waiting, up to ``batch``: ``[(bytes, address), ...]`` (``[]``: none)."""
        vector = self._recv
        words, step = vector.words, vector.step
        namelen_at, len_at = vector.namelen_at, vector.len_at
        # The kernel shortened msg_namelen of the messages it filled last time.
        for i in range(self._filled):
            words[i * step + namelen_at] = _SOCKADDR_SIZE
        got = _LIBC.recvmmsg(self.fd, vector.address, self.batch, MSG_DONTWAIT, None)
        self._filled = max(got, 0)
        if got <= 0:
            if got < 0:
                err = ctypes.get_errno()
                if err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED,
                               errno.ENOBUFS, errno.ENOMEM):
                    raise OSError(err, "recvmmsg: " + errno.errorcode.get(err, str(err)))
            return []
        view, slot = vector.view, self.slot
        # Lengths and (IPv4) address keys of all messages, each in one C call.
        lengths = words[len_at:len_at + got * step:step].tolist()
        by_raw = self._by_raw
        if self.family == socket.AF_INET:
            keys = vector.name_words[0:got * (_SOCKADDR_SIZE // 8):_SOCKADDR_SIZE // 8].tolist()
        else:
            keys = [None] * got
        out = []
        offset = 0
        for i, (size, key) in enumerate(zip(lengths, keys)):
            if size >= slot and words[i * step + vector.flags_at] & MSG_TRUNC:
                # Larger than any datagram of the protocol: counted, never delivered.
                self.truncated += 1
            else:
                address = by_raw.get(key) if key is not None else None
                if address is None:
                    address = self._received_address(i)
                out.append((view[offset:offset + size].tobytes(), address))
            offset += slot
        return out

    def send(self, items) -> int:
        """Send ``[(datagram, address), ...]``; returns how many could not be sent.

        A lone datagram (a reply at light load) goes with ``sendto``: one
        system call either way, without building a message vector.
        """
        total = len(items)
        if total == 1:
            return self._send_one(*items[0])
        failed = 0
        start = 0
        while start < total:
            count = min(self.batch, total - start)
            failed += self._send_chunk(items, start, count)
            start += count
        return failed

    def _send_one(self, packet, address) -> int:
        if len(packet) > self.slot:
            return 1
        for _ in range(2):
            try:
                self.sock.sendto(packet, address)
                return 0
            except ConnectionRefusedError:
                continue  # a pending ICMP error, reported and cleared: once more
            except (OSError, ValueError, TypeError, OverflowError):
                return 1
        return 1

    def _send_chunk(self, items, start, count):
        vector = self._send
        words, step, namelen_at = vector.words, vector.step, vector.namelen_at
        qwords, qstep, iov = vector.qwords, vector.qstep, vector.iov
        sockaddrs = self._sockaddr
        zero_copy = _DATA_OFFSET
        failed = 0
        filled = 0
        keep = []  # every buffer a header points at stays alive until sendmmsg returned
        for packet, address in items[start:start + count]:
            raw = sockaddrs.get(address)
            if raw is None:
                try:
                    raw = self.sockaddr(address)
                except (OSError, ValueError, TypeError, OverflowError, AttributeError,
                        IndexError):
                    failed += 1
                    continue
            size = len(packet)
            if size > self.slot:
                failed += 1
                continue
            keep.append(raw)
            if zero_copy is not None and type(packet) is bytes:
                # The kernel reads the bytes object's own buffer: no copy.
                iov[2 * filled] = id(packet) + zero_copy
                keep.append(packet)
            else:
                offset = filled * self.slot
                vector.view[offset:offset + size] = packet
                iov[2 * filled] = vector.buffer_base + offset
            iov[2 * filled + 1] = size
            words[filled * step + namelen_at] = len(raw)
            qwords[filled * qstep] = (id(raw) + zero_copy if zero_copy is not None
                                      else ctypes.cast(ctypes.c_char_p(raw), ctypes.c_void_p).value)
            filled += 1
        done = 0
        refused = False
        while done < filled:
            sent = _LIBC.sendmmsg(self.fd, vector.address + done * vector.size, filled - done, 0)
            if sent > 0:
                done += sent
                continue
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err == errno.ECONNREFUSED and not refused:
                refused = True  # a pending ICMP error, reported and cleared: once more
                continue
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                failed += filled - done  # the socket buffer is full: the rest is lost
                break
            failed += 1  # this one datagram (bad address, too long): skip it
            done += 1
        del keep
        return failed
