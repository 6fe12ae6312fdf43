"""The hand-made HTTP/1.1 client (shared/http1.py) against a real socket server answering each way an HTTP
server may: Content-Length, chunked, `Connection: close`, HTTP/1.0 without a length, malformed status lines and
headers, bodies over the cap, idle connections the server closed, and a server that is not there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from shared import http1


@dataclass
class Server:
    """Answers every request with `answer(n)` (n counts requests), on connections it counts."""

    answer: Callable[[int], bytes]
    close_after_answer: bool = False
    requests: int = 0
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                self.bodies.append(await reader.readexactly(length))
                self.requests += 1
                writer.write(self.answer(self.requests))
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class Serve(Protocol):
    """The `serve` fixture: a server answering with `answer`, and its URL."""

    async def __call__(self, answer: Callable[[int], bytes], *,
                       close_after_answer: bool = False) -> tuple[Server, str]: ...


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(answer: Callable[[int], bytes], *, close_after_answer: bool = False) -> tuple[Server, str]:
        server = Server(answer, close_after_answer=close_after_answer)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        port = listening.sockets[0].getsockname()[1]
        return server, f"http://127.0.0.1:{port}"

    yield start
    for listening in servers:
        listening.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


async def test_keep_alive_reuses_one_connection(serve: Serve) -> None:
    server, url = await serve(lambda n: ok(b'{"n":%d}' % n))
    pool = http1.KeepAlivePool(url, 4)
    assert await pool.post("/x", b"{}") == (200, b'{"n":1}')
    assert await pool.post("/x", b"{}") == (200, b'{"n":2}')
    assert server.connections == 1
    await pool.close()


async def test_chunked_body_is_read_whole(serve: Serve) -> None:
    chunked = (b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
               b"4\r\n{\"a\"\r\n6;ext=1\r\n:true}\r\n0\r\n\r\n")
    server, url = await serve(lambda n: chunked)
    pool = http1.KeepAlivePool(url, 1)
    assert await pool.post("/x", b"{}") == (201, b'{"a":true}')
    assert await pool.post("/x", b"{}") == (201, b'{"a":true}')
    assert server.connections == 1  # the connection stays usable after a chunked body
    await pool.close()


async def test_connection_close_is_not_reused(serve: Serve) -> None:
    server, url = await serve(lambda n: ok(b"{}", b"connection: close\r\n"), close_after_answer=True)
    pool = http1.KeepAlivePool(url, 1)
    for _ in range(3):
        assert await pool.post("/x", b"{}") == (200, b"{}")
    assert server.connections == 3
    await pool.close()


async def test_http10_without_length_reads_to_the_end(serve: Serve) -> None:
    server, url = await serve(lambda n: b"HTTP/1.0 200 OK\r\n\r\nthe whole body", close_after_answer=True)
    pool = http1.KeepAlivePool(url, 1)
    assert await pool.post("/x", b"{}") == (200, b"the whole body")
    assert await pool.post("/x", b"{}") == (200, b"the whole body")
    assert server.connections == 2
    await pool.close()


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
])
async def test_malformed_answers_are_broken_exchanges(serve: Serve, answer: bytes) -> None:
    _, url = await serve(lambda n: answer, close_after_answer=True)
    pool = http1.KeepAlivePool(url, 1)
    with pytest.raises(http1.BrokenExchange):
        await pool.post("/x", b"{}")
    await pool.close()


async def test_bodies_over_the_cap_are_refused(serve: Serve) -> None:
    _, url = await serve(lambda n: ok(b"x" * 2048))
    pool = http1.KeepAlivePool(url, 1, max_body_bytes=1024)
    with pytest.raises(http1.BrokenExchange, match="cap"):
        await pool.post("/x", b"{}")
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n"
    _, chunked_url = await serve(lambda n: chunked)
    capped = http1.KeepAlivePool(chunked_url, 1, max_body_bytes=1024)
    with pytest.raises(http1.BrokenExchange, match="cap"):
        await capped.post("/x", b"{}")
    await pool.close()
    await capped.close()


async def test_idle_connections_expire_and_a_closed_one_is_retried_once(serve: Serve) -> None:
    server, url = await serve(lambda n: ok(b"{}"))
    pool = http1.KeepAlivePool(url, 1, idle_s=0.05)
    await pool.post("/x", b"{}")
    await asyncio.sleep(0.1)
    await pool.post("/x", b"{}")
    assert server.connections == 2  # the stale one was closed, not reused

    closing, closing_url = await serve(lambda n: ok(b"{}"), close_after_answer=True)
    reusing = http1.KeepAlivePool(closing_url, 1)  # the server closes each connection after one answer
    assert await reusing.post("/x", b"{}") == (200, b"{}")
    await asyncio.sleep(0.05)
    assert await reusing.post("/x", b"{}") == (200, b"{}")  # the closed idle one: retried on a fresh one
    assert closing.requests == 2
    await pool.close()
    await reusing.close()


async def test_nobody_listening_is_not_sent() -> None:
    pool = http1.KeepAlivePool("http://127.0.0.1:9", 1)
    with pytest.raises(http1.NotSent):
        await pool.post("/x", b"{}")
