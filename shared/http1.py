"""A lean HTTP/1.1 keep-alive client for hot internal paths (the gateway's calls to province nodes, the benches'
load). On a 2-core machine a general-purpose client (httpx) spends about as much CPU per call as the service
it calls; this one writes the request and reads `Content-Length` bytes back, nothing else.

Errors say what the caller can know: `NotSent` (the connection could not be opened: nothing reached the
other side) and `BrokenExchange` (the connection broke after the request may have left)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class NotSent(Exception):
    """The request never left: the other side cannot have acted on it."""


class BrokenExchange(Exception):
    """The connection broke after the request may have been written."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise BrokenExchange("connection closed before an answer")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await self.reader.readexactly(length) if length else b""
        return status, body


class KeepAlivePool:
    """At most `size` connections to one host:port, each carrying one request at a time."""

    def __init__(self, base_url: str, size: int, headers: dict[str, str] | None = None) -> None:
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
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._open()
            try:
                try:
                    answer = await connection.exchange(raw)
                except (BrokenExchange, ConnectionError, asyncio.IncompleteReadError):
                    connection.close()
                    if not reused:
                        raise
                    # The server closed an idle keep-alive connection before reading our request (it answered
                    # nothing): one retry on a fresh connection. Callers send only requests that are idempotent
                    # by their own key (msgid, Idempotency-Key), so even an unlikely double is harmless.
                    connection = await self._open()
                    answer = await connection.exchange(raw)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                connection.close()
                raise BrokenExchange(type(exc).__name__) from exc
            except BaseException:
                connection.close()
                raise
            self._idle.append(connection)
        return answer

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
