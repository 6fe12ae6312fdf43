"""The benches' load client: shared/http1.py's lean keep-alive pool, speaking JSON. The benches measure the
federation, not the load generator: on a 2-core machine a general-purpose client (httpx) spends about as
much CPU per request as the service it is measuring."""

from __future__ import annotations

import orjson

from shared import http1


class KeepAlivePool(http1.KeepAlivePool):
    async def post_json(self, path: str, body: object, headers: dict[str, str]) -> tuple[int, object]:
        status, answer = await self.post(path, orjson.dumps(body), headers)
        return status, orjson.loads(answer) if answer else None
