"""The POS simulator's till (launcher/pos_client.py) resends a message once when the connection broke before any
answer came, as a real till does after a lost answer: the same body, newly signed. No network: httpx's mock
transport stands for the gateway."""

from __future__ import annotations

import httpx
import pytest

from launcher.pos_client import PosClient
from services.pharmacy_gateway.domain.tif_auth import HEADER_NONCE

ANSWER = {"infcode": 0, "output": {}}


def _till(handler: httpx.MockTransport) -> PosClient:
    return PosClient("http://gateway", "P51010000001", "成都康泰大药房", "510100", "PAAS1", "token",
                     http=httpx.AsyncClient(transport=handler))


async def test_a_connection_closed_before_the_answer_is_tried_once_more_newly_signed() -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, json=ANSWER)

    till = _till(httpx.MockTransport(gateway))
    envelope = till.envelope("1101", {"data": {}})
    assert await till.send(envelope) == (200, ANSWER)
    first, second = seen
    assert first.content == second.content  # the same message, msgid included
    assert first.headers[HEADER_NONCE] != second.headers[HEADER_NONCE]


async def test_a_second_failure_and_a_caller_signing_its_own_headers_get_the_error() -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    till = _till(httpx.MockTransport(gateway))
    envelope = till.envelope("1101", {"data": {}})
    with pytest.raises(httpx.RemoteProtocolError):
        await till.send(envelope)
    with pytest.raises(httpx.RemoteProtocolError):
        await till.send(envelope, till.signed_headers())
