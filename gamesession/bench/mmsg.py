"""Batched UDP I/O for the load generator: ``sendmmsg``/``recvmmsg`` through ctypes.

One system call moves a whole window of datagrams, so the generator spends
far less per packet than the server it measures (which, like any Twisted
``DatagramProtocol``, makes one ``recvfrom`` and one ``sendto`` per
datagram).  Where the calls are missing, ``SocketBatch`` does the same with
one call per datagram.
"""

import ctypes
import ctypes.util
import errno
import socket

MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)


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
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.sendmmsg, libc.recvmmsg  # noqa: B018 - present?
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


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


class MMsgBatch:
    """sendmmsg/recvmmsg of up to ``batch`` datagrams on a connected, non-blocking socket."""

    def __init__(self, sock, batch, slot=2048):
        self.sock = sock
        self.fd = sock.fileno()
        self.batch = batch
        self.slot = slot
        self._send_msgs, self._send_lens, self._send_view = self._vector(batch, slot)
        self._recv_msgs, _, self._recv_view = self._vector(batch, slot, fill=slot)
        # msg_len of message i, read without building ctypes proxies per packet.
        words = memoryview(self._recv_msgs).cast("B").cast("I")
        step = ctypes.sizeof(_MMsgHdr) // 4
        first = _MMsgHdr.msg_len.offset // 4
        self._recv_len = (words, step, first)

    def _vector(self, batch, slot, fill=0):
        buffer = ctypes.create_string_buffer(batch * slot)
        iovs = (_IOVec * batch)()
        msgs = (_MMsgHdr * batch)()
        base = ctypes.addressof(buffer)
        for i in range(batch):
            iovs[i].iov_base = base + i * slot
            iovs[i].iov_len = fill
            msgs[i].msg_hdr.msg_iov = ctypes.pointer(iovs[i])
            msgs[i].msg_hdr.msg_iovlen = 1
        if not hasattr(self, "_buffers"):
            self._buffers = []
        self._buffers.append((buffer, iovs))
        # iov_len of entry i is size_t number 2*i+1 of the iovec array.
        lens = memoryview(iovs).cast("B").cast("N")
        return msgs, lens, memoryview(buffer).cast("B")

    def send(self, packets) -> int:
        view, lens, slot = self._send_view, self._send_lens, self.slot
        count = len(packets)
        for i, packet in enumerate(packets):
            offset = i * slot
            size = len(packet)
            view[offset:offset + size] = packet
            lens[2 * i + 1] = size
        sent = _LIBC.sendmmsg(self.fd, self._send_msgs, count, 0)
        if sent < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOBUFS):
                return 0
            raise OSError(err, "sendmmsg failed")
        return sent

    def recv(self):
        got = _LIBC.recvmmsg(self.fd, self._recv_msgs, self.batch, MSG_DONTWAIT, None)
        if got <= 0:
            if got < 0 and ctypes.get_errno() not in (errno.EAGAIN, errno.ECONNREFUSED):
                raise OSError(ctypes.get_errno(), "recvmmsg failed")
            return []
        view, slot = self._recv_view, self.slot
        words, step, first = self._recv_len
        return [view[i * slot:i * slot + words[i * step + first]].tobytes() for i in range(got)]


def batcher(sock, batch, slot=2048):
    """The fastest batch I/O this system offers for ``sock``."""
    if _LIBC is not None:
        return MMsgBatch(sock, batch, slot)
    return SocketBatch(sock, batch, slot)
