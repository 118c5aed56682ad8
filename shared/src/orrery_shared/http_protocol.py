"""Every service's HTTP/1.1 protocol: uvicorn's httptools protocol, with limits on a request's head.

uvicorn waits for a request's head (its request line and headers) as long as the client likes, and takes headers
of any size: a client that sends half a head, or one enormous header line (a WebSocket upgrade carrying it),
holds a connection for minutes with no answer. Here a head must be complete within HEAD_TIMEOUT_SECONDS
(else 408 and the connection closes), no line of it may pass MAX_LINE_BYTES and the whole not MAX_HEAD_BYTES
(else 431). The checks read the bytes before the parser does (the parser would buffer a header line of any
length), from the start of a connection or of the next request (the parser's on_message_begin) until the
headers are complete; a body's bytes — also the rest of one a response refused unread — are never counted. They
depend only on uvicorn's protocol interface (connection_made, data_received, on_message_begin,
on_headers_complete, connection_lost), which its WebSocket upgrade goes through too.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT_SECONDS = 10.0
MAX_LINE_BYTES = 8 * 1024
MAX_HEAD_BYTES = 16 * 1024


class GuardedHttpProtocol(HttpToolsProtocol):
    head_timeout_seconds = HEAD_TIMEOUT_SECONDS
    max_line_bytes = MAX_LINE_BYTES
    max_head_bytes = MAX_HEAD_BYTES

    _head_timer: asyncio.TimerHandle | None = None
    _in_head = True  # reading a request's head (until its headers are complete)
    _head_bytes = 0
    _line_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._head_too_large(data):
            self._refuse(431, b"Request Header Fields Too Large")
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A next request on the connection: its head is timed from its first byte (uvicorn's keep-alive timeout
        # covers the wait before it).
        if not self._in_head:
            self._in_head, self._head_bytes, self._line_bytes = True, 0, 0
            self._start_head()

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def _start_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_large(self, data: bytes) -> bool:
        """Count `data` towards the head, up to the blank line that ends it (what follows is body)."""
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            line = self._line_bytes + end - start  # its length so far, the part in earlier data included
            self._head_bytes += end + 1 - start
            if line > self.max_line_bytes or self._head_bytes > self.max_head_bytes:
                return True
            self._line_bytes, start = 0, end + 1
            if line <= 1:  # "\r\n" alone: the head is complete, the parser takes it from here
                return False
        self._line_bytes += len(data) - start
        self._head_bytes += len(data) - start
        return self._line_bytes > self.max_line_bytes or self._head_bytes > self.max_head_bytes

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, b"Request Timeout")

    def _refuse(self, status: int, reason: bytes) -> None:
        self._end_head()
        if self.transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n" % (status, reason)
        self.transport.write(head + b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(reason), reason))
        self.transport.close()
