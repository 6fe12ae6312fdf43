"""A lean HTTP/1.1 keep-alive client for load generation. The benches measure the federation, not the load
generator: on a 2-core machine a general-purpose client (httpx) spends about as much CPU per request as the
service it is measuring, so the hot loop of a bench uses this instead (the set-up still uses httpx)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson


class HttpError(Exception):
    pass


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise HttpError("connection closed")
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

    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._gate = asyncio.Semaphore(size)

    async def _take(self) -> _Connection:
        if not self._idle.empty():
            return self._idle.get_nowait()
        return await self._take_new()

    async def _take_new(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)

    async def post_json(self, path: str, body: object, headers: dict[str, str]) -> tuple[int, object]:
        payload = orjson.dumps(body)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        raw = (f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(payload)}\r\n{head}\r\n").encode() + payload
        async with self._gate:
            reused = not self._idle.empty()
            connection = await self._take()
            try:
                status, answer = await connection.request(raw)
            except (HttpError, ConnectionError, asyncio.IncompleteReadError):
                connection.writer.close()
                if not reused:
                    raise
                # The server closed an idle keep-alive connection before our request reached it: one retry
                # on a fresh connection (the benches send an Idempotency-Key, so a retry cannot double).
                connection = await self._take_new()
                status, answer = await connection.request(raw)
            except BaseException:
                connection.writer.close()
                raise
            self._idle.put_nowait(connection)
        return status, orjson.loads(answer) if answer else None

    async def close(self) -> None:
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            connection.writer.close()
