"""A lean HTTP/1.1 keep-alive client for hot internal paths (the gateway's calls to province nodes, the benches'
load). On a 2-core machine a general-purpose client (httpx) spends about as much CPU per call as the service
it calls; this one writes the request and reads `Content-Length` bytes back, nothing else.

Why hand-made, and its fence: measured here, httpx cost 40% of the gateway's CPU on the POS path. This client
does only what our services answer and refuses the rest clearly: bodies by `Content-Length` or chunked, read up
to `max_body_bytes`; `Connection: close` (or an HTTP/1.0 answer) is honoured by not reusing the connection; a
connection idle longer than `idle_s` (below uvicorn's keep-alive of 5 s) is closed rather than reused; a status
line or header that is not HTTP/1.x is a `BrokenExchange`. tests/unit/test_http1.py drives each case against a
real socket server.

Errors say what the caller can know: `NotSent` (the connection could not be opened: nothing reached the
other side) and `BrokenExchange` (the connection broke, or the answer could not be read, after the request may
have left)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

MAX_BODY_BYTES = 8 * 1024 * 1024
IDLE_S = 4.0


class NotSent(Exception):
    """The request never left: the other side cannot have acted on it."""


class BrokenExchange(Exception):
    """The connection broke after the request may have been written."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = True
        self.idle_since_s = time.monotonic()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, raw: bytes, max_body_bytes: int) -> tuple[int, bytes]:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise BrokenExchange("connection closed before an answer")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self.reusable = False
            raise BrokenExchange(f"not an HTTP/1.x status line: {status_line[:40]!r}")
        status = int(parts[1])
        self.reusable = parts[0] != b"HTTP/1.0"
        length: int | None = None
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.partition(b":")
            if not colon:
                self.reusable = False
                raise BrokenExchange(f"malformed header line: {line[:40]!r}")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if not value.isdigit():
                    self.reusable = False
                    raise BrokenExchange(f"bad content-length: {value[:20]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value == b"chunked"
            elif name == b"connection":
                self.reusable = self.reusable and value != b"close"
        if chunked:
            body = await self._read_chunked(max_body_bytes)
        elif length is not None:
            if length > max_body_bytes:
                self.reusable = False
                raise BrokenExchange(f"answer of {length} bytes is over the {max_body_bytes}-byte cap")
            body = await self.reader.readexactly(length) if length else b""
        else:
            # Neither length nor chunks: the body runs to the end of the connection.
            self.reusable = False
            body = await self.reader.read(max_body_bytes + 1)
            if len(body) > max_body_bytes:
                raise BrokenExchange(f"answer over the {max_body_bytes}-byte cap")
        return status, body

    async def _read_chunked(self, max_body_bytes: int) -> bytes:
        body = bytearray()
        while True:
            size_line = (await self.reader.readline()).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as exc:
                self.reusable = False
                raise BrokenExchange(f"bad chunk size: {size_line[:20]!r}") from exc
            if size == 0:
                while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > max_body_bytes:
                self.reusable = False
                raise BrokenExchange(f"answer over the {max_body_bytes}-byte cap")
            body += await self.reader.readexactly(size)
            await self.reader.readline()  # the CRLF after the chunk


class KeepAlivePool:
    """At most `size` connections to one host:port, each carrying one request at a time."""

    def __init__(self, base_url: str, size: int, headers: dict[str, str] | None = None, *,
                 max_body_bytes: int = MAX_BODY_BYTES, idle_s: float = IDLE_S) -> None:
        self.max_body_bytes = max_body_bytes
        self.idle_s = idle_s
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._idle: list[_Connection] = []
        self._gate = asyncio.Semaphore(size)

    async def _open(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise NotSent(f"cannot connect to {self.host}:{self.port}: {type(exc).__name__}") from exc
        return _Connection(reader, writer)

    async def post(self, path: str, payload: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """POST `payload` (JSON bytes); returns (status, body). The caller bounds the wait (asyncio.timeout);
        a connection whose exchange did not finish is never reused."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        raw = (f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(payload)}\r\n{self._fixed}{extra}\r\n").encode() + payload
        async with self._gate:
            connection = self._take_idle()
            reused = connection is not None
            if connection is None:
                connection = await self._open()
            try:
                try:
                    answer = await connection.exchange(raw, self.max_body_bytes)
                except (BrokenExchange, ConnectionError, asyncio.IncompleteReadError):
                    connection.close()
                    if not reused:
                        raise
                    # The server closed an idle keep-alive connection before reading our request (it answered
                    # nothing): one retry on a fresh connection. Callers send only requests that are idempotent
                    # by their own key (msgid, Idempotency-Key), so even an unlikely double is harmless.
                    connection = await self._open()
                    answer = await connection.exchange(raw, self.max_body_bytes)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                connection.close()
                raise BrokenExchange(type(exc).__name__) from exc
            except BaseException:
                connection.close()
                raise
            if connection.reusable:
                connection.idle_since_s = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
        return answer

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection still fresh; staler ones (the server may be closing them) go."""
        now_s = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if now_s - connection.idle_since_s < self.idle_s:
                return connection
            connection.close()
        return None

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
