"""Many datagrams on one socket in one system call: libc's ``sendmmsg`` through ctypes.

One incoming RTP packet goes to every subscriber of its publisher; on the node's shared UDP
socket (media/udpmux.py) those sends are queued here while the packet is forwarded and written
with one ``sendmmsg`` at the end, instead of one ``sendto`` (a system call, and uvloop's Python
call around it) each. The message headers, their iovecs and sockaddrs live in buffers made once;
queuing a datagram copies it into its slot with memoryview assignments, no ctypes objects per
packet. Linux (x86-64 and aarch64 layouts: LP64). Without ``sendmmsg`` in libc, or when the
socket's transport already holds a backlog (order must be kept), datagrams go one by one
through the transport.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct
from typing import Any

#: Datagrams per system call; a longer batch is flushed in several calls.
SLOTS = 64
#: Bytes per datagram slot: more than the shield lets in, so every forwarded packet fits.
SLOT = 1536
MSG_DONTWAIT = 0x40
_MMSGHDR = 64  # struct mmsghdr on LP64: msghdr (56) + msg_len (4) + padding (4)
_IOVEC = 16
_SOCKADDR = 16  # struct sockaddr_in
_U64 = struct.Struct("=Q")


def _sendmmsg() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SENDMMSG = _sendmmsg() if ctypes.sizeof(ctypes.c_void_p) == 8 else None


def sockaddr_in(addr: tuple[str, int]) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(addr[1]), socket.inet_aton(addr[0]))


class BatchSender:
    """Datagrams queued per socket during one forwarding pass, flushed with ``sendmmsg``."""

    def __init__(self) -> None:
        self._headers = (ctypes.c_char * (_MMSGHDR * SLOTS))()
        self._iovecs = (ctypes.c_char * (_IOVEC * SLOTS))()
        self._names = (ctypes.c_char * (_SOCKADDR * SLOTS))()
        self._data = (ctypes.c_char * (SLOT * SLOTS))()
        self._data_view = memoryview(self._data).cast("B")
        self._iovec_view = memoryview(self._iovecs).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        self._sockaddrs: dict[tuple[str, int], bytes] = {}
        headers, iovecs = ctypes.addressof(self._headers), ctypes.addressof(self._iovecs)
        names, data = ctypes.addressof(self._names), ctypes.addressof(self._data)
        for i in range(SLOTS):
            # msghdr: name, namelen, iov, iovlen, control, controllen, flags (and msg_len)
            name, iovec = names + i * _SOCKADDR, iovecs + i * _IOVEC
            struct.pack_into("=QI4xQQQQi4xI4x", self._headers, i * _MMSGHDR,
                             name, _SOCKADDR, iovec, 1, 0, 0, 0, 0)  # fmt: skip
            struct.pack_into("=QQ", self._iovecs, i * _IOVEC, data + i * SLOT, 0)
        self._address = headers
        #: Queued datagrams: (fd, transport) -> [(data, addr)].
        self._queue: dict[tuple[int, Any], list[tuple[bytes, Any]]] = {}
        self.calls = 0  # system calls made, for the bench and tests
        self.datagrams = 0

    def add(self, fd: int, transport: Any, data: bytes, addr: Any) -> None:
        key = (fd, transport)
        queued = self._queue.get(key)
        if queued is None:
            self._queue[key] = [(data, addr)]
        else:
            queued.append((data, addr))

    def flush(self) -> None:
        if not self._queue:
            return
        queue, self._queue = self._queue, {}
        for (fd, transport), datagrams in queue.items():
            if (
                _SENDMMSG is None
                or len(datagrams) == 1
                or transport.is_closing()
                or transport.get_write_buffer_size()
            ):
                for data, addr in datagrams:
                    transport.sendto(data, addr)
                continue
            for start in range(0, len(datagrams), SLOTS):
                self._send(fd, transport, datagrams[start : start + SLOTS])

    def _send(self, fd: int, transport: Any, batch: list[Any]) -> None:
        data_view, iovec_view, names_view = self._data_view, self._iovec_view, self._names_view
        sockaddrs = self._sockaddrs
        for i, (data, addr) in enumerate(batch):
            size = len(data)
            if size > SLOT:
                raise ValueError(f"datagram of {size} bytes is longer than {SLOT}")
            offset = i * SLOT
            data_view[offset : offset + size] = data
            _U64.pack_into(iovec_view, i * _IOVEC + 8, size)
            name = sockaddrs.get(addr)
            if name is None:
                name = sockaddrs[addr] = sockaddr_in(addr)
                if len(sockaddrs) > 65536:  # remote addresses come and go: stay bounded
                    sockaddrs.clear()
            names_view[i * _SOCKADDR : (i + 1) * _SOCKADDR] = name
        sendmmsg = _SENDMMSG
        assert sendmmsg is not None  # flush() checked
        sent = sendmmsg(fd, self._address, len(batch), MSG_DONTWAIT)
        self.calls += 1
        if sent < 0:
            code = ctypes.get_errno()
            if code not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR):
                # as a datagram transport does: an unreachable remote is not our failure
                sent = 1  # skip the datagram that failed, try the rest
            else:
                sent = 0
        self.datagrams += sent
        for data, addr in batch[sent:]:
            transport.sendto(data, addr)  # the transport buffers what the socket refused
