"""Many datagrams on one socket in one system call: libc's ``sendmmsg`` through ctypes.

One incoming RTP packet goes to every subscriber of its publisher; on the node's shared UDP
socket (media/udpmux.py) those sends are queued here while the packet is forwarded and written
with one ``sendmmsg`` at the end, instead of one ``sendto`` (a system call, and uvloop's Python
call around it) each — on this kind of VM a system call alone costs about 2.5 µs. The message
headers and iovecs live in buffers made once, a destination's sockaddr is made once, and the
iovecs point into the queued ``bytes`` themselves: per datagram, two ``struct.pack_into`` and
no copy, no ctypes object. Linux (x86-64 and aarch64 layouts: LP64). Without ``sendmmsg`` in
libc, or when the socket's transport already holds a backlog (order must be kept), datagrams go
one by one through the transport.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import sys
from typing import Any

#: Datagrams per system call; a longer batch is flushed in several calls.
SLOTS = 64
MSG_DONTWAIT = 0x40
#: ``CALLBOOK_MEDIA_SENDMMSG=0``: one ``sendto`` per datagram (for comparison in bench/sfu.py).
ENABLED = os.environ.get("CALLBOOK_MEDIA_SENDMMSG", "1") != "0"
_MMSGHDR = 64  # struct mmsghdr on LP64: msghdr (56) + msg_len (4) + padding (4)
_IOVEC = 16
_SOCKADDR = 16  # struct sockaddr_in
_SOCKADDR6 = 28  # struct sockaddr_in6
_NAME = struct.Struct("=QI")  # msg_name, msg_namelen
_IOV = struct.Struct("=QQ")
#: Where a bytes object's data starts, from its id() (CPython's PyBytesObject: the header, then
#: ``ob_sval``); checked below and in tests/test_sfu_udpmux.py.
BYTES_OFFSET = sys.getsizeof(b"") - 1


def _bytes_offset_holds() -> bool:
    probe = b"callbook-sendmmsg"
    return ctypes.string_at(id(probe) + BYTES_OFFSET, len(probe)) == probe


def _sendmmsg() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SENDMMSG = (
    _sendmmsg()
    if ctypes.sizeof(ctypes.c_void_p) == 8
    and sys.implementation.name == "cpython"
    and _bytes_offset_holds()
    else None
)


def sockaddr_in(addr: tuple[str, int]) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(addr[1]), socket.inet_aton(addr[0]))


def sockaddr_in6(addr: tuple[str, int]) -> bytes:
    """(family, port, flow info 0, address, scope id 0): loopback and global addresses."""
    packed = socket.inet_pton(socket.AF_INET6, addr[0])
    return struct.pack("=HHI16sI", socket.AF_INET6, socket.htons(addr[1]), 0, packed, 0)


class Destination:
    """A remote address as ``sendmmsg`` wants it; keep it while datagrams to it are queued."""

    __slots__ = ("_buffer", "addr", "length", "pointer")

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        ipv6 = ":" in addr[0]  # a socket of the node's mux bound to an IPv6 address
        self.length = _SOCKADDR6 if ipv6 else _SOCKADDR
        name = sockaddr_in6(addr) if ipv6 else sockaddr_in(addr)
        self._buffer = ctypes.create_string_buffer(name, self.length)
        self.pointer = ctypes.addressof(self._buffer)


Queued = list[tuple[bytes, Destination]]


class BatchSender:
    """Datagrams queued per socket during one forwarding pass, flushed with ``sendmmsg``.

    ``queue(fd, transport)`` gives the list a sender appends ``(datagram, Destination)`` to (one
    list per socket, kept: appending is all a forwarded packet costs until ``flush``)."""

    def __init__(self, enabled: bool = ENABLED) -> None:
        self._headers = (ctypes.c_char * (_MMSGHDR * SLOTS))()
        self._iovecs = (ctypes.c_char * (_IOVEC * SLOTS))()
        self._header_view = memoryview(self._headers).cast("B")
        self._iovec_view = memoryview(self._iovecs).cast("B")
        iovecs = ctypes.addressof(self._iovecs)
        for i in range(SLOTS):
            # msghdr: name, namelen, iov, iovlen, control, controllen, flags (and msg_len)
            struct.pack_into("=QI4xQQQQi4xI4x", self._headers, i * _MMSGHDR,
                             0, _SOCKADDR, iovecs + i * _IOVEC, 1, 0, 0, 0, 0)  # fmt: skip
        self._address = ctypes.addressof(self._headers)
        self._sendmmsg = _SENDMMSG if enabled else None
        self._queues: dict[int, tuple[Any, Queued]] = {}
        self.calls = 0  # sendmmsg calls made, for the bench and tests
        self.datagrams = 0  # datagrams those calls sent

    def queue(self, fd: int, transport: Any) -> Queued:
        found = self._queues.get(fd)
        if found is None or found[0] is not transport:
            found = self._queues[fd] = (transport, [])
        return found[1]

    def flush(self) -> None:
        for fd, (transport, queued) in self._queues.items():
            if not queued:
                continue
            if (
                self._sendmmsg is None
                or len(queued) == 1
                or transport.is_closing()
                or transport.get_write_buffer_size()
            ):
                for data, destination in queued:
                    transport.sendto(data, destination.addr)
            else:
                for start in range(0, len(queued), SLOTS):
                    self._send(fd, transport, queued[start : start + SLOTS])
            queued.clear()

    def _send(self, fd: int, transport: Any, batch: Queued) -> None:
        """The iovecs point into the queued ``bytes`` themselves (``BYTES_OFFSET``), which
        ``batch`` keeps alive until the call returns: nothing is copied."""
        header_view, iovec_view = self._header_view, self._iovec_view
        name, iov = _NAME.pack_into, _IOV.pack_into
        for i, (data, destination) in enumerate(batch):
            name(header_view, i * _MMSGHDR, destination.pointer, destination.length)
            iov(iovec_view, i * _IOVEC, id(data) + BYTES_OFFSET, len(data))
        sendmmsg = self._sendmmsg
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
        for data, destination in batch[sent:]:
            transport.sendto(data, destination.addr)  # the transport buffers the rest
