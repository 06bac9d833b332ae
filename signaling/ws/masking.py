"""Client frames must be masked (RFC 6455 section 5.1): an unmasked one closes with 1002.

aiohttp's frame reader accepts unmasked client frames and has no option to refuse them, so the
bytes pass through a small scanner first. It reads only frame headers and skips payloads by
count: per frame a few integer operations, no copy of the payload.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

_UNMASKED = "A client frame was not masked (RFC 6455 section 5.1)."


class _Parser(Protocol):
    def feed_data(self, data: bytes) -> tuple[bool, bytes]: ...

    def feed_eof(self) -> None: ...


class _Queue(Protocol):
    def set_exception(self, exc: BaseException) -> None: ...


class MaskCheck:
    """Frame boundaries of a client's byte stream, refusing the first unmasked frame.

    ``feed`` returns False once a frame header without the mask bit has been seen.
    """

    __slots__ = ("_head", "_skip", "refused")

    def __init__(self) -> None:
        self._head = b""  # the start of a frame header split across reads
        self._skip = 0  # payload bytes of the current frame still to come
        self.refused = False

    def feed(self, data: bytes) -> bool:
        pos, end = 0, len(data)
        while pos < end and not self.refused:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            pos = self._header(data, pos)
        return not self.refused

    def _header(self, data: bytes, pos: int) -> int:
        kept = len(self._head)
        buf = self._head + data[pos : pos + 14 - kept] if kept else data[pos : pos + 14]
        if len(buf) < 2:
            self._head = buf
            return len(data)
        second = buf[1]
        if not second & 0x80:
            self.refused = True
            return len(data)
        flag = second & 0x7F
        extra = 2 if flag == 126 else 8 if flag == 127 else 0
        need = 2 + extra + 4
        if len(buf) < need:
            self._head = buf
            return len(data)
        self._skip = int.from_bytes(buf[2 : 2 + extra], "big") if extra else flag
        self._head = b""
        return pos + need - kept


class _MaskedOnly:
    """aiohttp's frame reader behind a :class:`MaskCheck`."""

    __slots__ = ("_check", "_parser", "_queue")

    def __init__(self, parser: _Parser, queue: _Queue, check: MaskCheck) -> None:
        self._parser = parser
        self._queue = queue
        self._check = check

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._check.refused:
            return True, b""
        if not self._check.feed(data):
            self.refuse()
            return True, b""
        return self._parser.feed_data(data)

    def refuse(self) -> None:
        # The socket's receive() turns this into a close with 1002.
        self._queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, _UNMASKED))

    def feed_eof(self) -> None:
        self._parser.feed_eof()


class ClientSocket(web.WebSocketResponse):
    """The server side of a call WebSocket, refusing unmasked client frames.

    It reaches two private attributes of aiohttp's connection (``_message_tail``, the bytes that
    came behind the upgrade request, and ``_payload_parser``, where they all go next); the
    unmasked-frame tests in tests/test_log_privacy.py fail if a new aiohttp moves them. And, to
    write a frame without a task (``write_now``), its writer's.
    """

    def write_now(self, data: bytes) -> bool:
        """Write a text frame at once when that is all ``send_frame`` would do: no compression
        (a large compressed frame goes through a thread) and a transport that is not paused
        (``send_frame`` would wait for it to drain). False: nothing written, use ``send_frame``.
        The call protocol writes a frame per message: a task for each cost more than the
        write."""
        writer: Any = self._writer
        if writer is None or writer.compress or writer._closing or writer.protocol._paused:
            return False
        writer._write_websocket_frame(data, WSMsgType.TEXT, 0)
        if writer._output_size > writer._limit:
            writer._output_size = 0  # as send_frame counts before it would wait on a pause
        return True

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        handler: Any = request.protocol
        # Bytes that came right behind the upgrade request are fed to the reader in
        # super()._post_start: check them first.
        tail: bytes = handler._message_tail
        check = MaskCheck()
        if tail and not check.feed(tail):
            handler._message_tail = b""
        super()._post_start(request, protocol, writer)
        guarded = _MaskedOnly(handler._payload_parser, self._reader, check)  # type: ignore[arg-type]
        handler._payload_parser = guarded
        if check.refused:
            guarded.refuse()
