"""What every service's HTTP side shares: the error body, never-500-for-bad-input handlers, health, readiness,
Prometheus metrics, and the operator / internal bearer checks."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ApiError as ApiError  # re-exported: entrypoints import it from here
from shared.errors import error_body as error_body
from shared.openapi import install_truthful_errors

log = logging.getLogger("yibao.web")

# A readiness check raises when its dependency is not there; it may return details for /readyz's body.
ReadinessCheck = Callable[[], Awaitable[object]]


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(code, message))


def validation_problem(errors: Sequence[Any]) -> tuple[str, str]:
    """The code and message of a body that failed its model: the first error, where it is (FastAPI's "body"
    prefix left out)."""
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    where = ".".join(str(part) for part in loc if part != "body")
    code = "MALFORMED_JSON" if first.get("type") == "json_invalid" else "VALIDATION_ERROR"
    if first.get("type") == "string_pattern_mismatch" and loc and str(loc[-1]).endswith("id_no"):
        code = "INVALID_ID_NO"  # API.md "Conventions": an ID number not of the documented shape, whichever field
    return code, f"{where or 'body'}: {first.get('msg', 'invalid request')}"


INTERNAL_MESSAGE = "internal error; nothing was changed"


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """A pydantic answer serialised once, straight to JSON: returning the model instead makes FastAPI validate
    it against the response model again before serialising, which hot paths do not need (the route still
    declares `response_model` for the OpenAPI schema)."""
    return Response(model.model_dump_json().encode(), status_code=status_code, media_type="application/json")


_HTTP_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
               405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 415: "UNSUPPORTED_MEDIA_TYPE"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, *validation_problem(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "HTTP_ERROR"), str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # API.md "Conventions": a wrong method gets 405 with `Allow`, naming every method of the path
            # (Starlette's own header names only the first route that matched the path).
            response.headers["allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: logged with the route only (bodies may carry personal data).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "INTERNAL", INTERNAL_MESSAGE)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route answers on this path: each tried against the app's routes (included routers too)."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


class MetricsMiddleware:
    """Counts requests and their latency per route template (pure ASGI: cheap on the hot path)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP latency", ["route"], registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.requests.labels(scope["method"], template, str(status[0])).inc()
            self.latency.labels(template).observe(time.perf_counter() - started)


FastHandler = Callable[[Any, Headers, bytes], Awaitable[tuple[int, bytes]]]
# Checks the headers before the body is read (raises ApiError: the usual error body, nothing read).
FastAuth = Callable[[Any, Headers], None]
# A refusal the adapter itself answers (body too large), rendered as (status, JSON bytes) from (status, code,
# message): the usual error body unless the route speaks another envelope (the gateway's national one).
FastRefusal = Callable[[int, str, str], tuple[int, bytes]]
MAX_FAST_BODY_BYTES = 1024 * 1024


def _error_bytes(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps(error_body(code, message))


@dataclass(frozen=True)
class FastDoc:
    """How a fast route appears in the service's /openapi.json (FastAPI documents only its own routes): what
    it does, its body and its answer (a pydantic model, or a JSON schema written down), and who may call it."""

    summary: str
    body: type[BaseModel] | dict[str, Any] | None = None
    answer: type[BaseModel] | dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    bearer: bool = False  # the internal (or another static) token in `Authorization: Bearer`


@dataclass(frozen=True)
class FastRoute:
    """A hot POST endpoint: `handler(app.state, headers, body)` answers (status, JSON bytes). `auth` runs on the
    headers before a byte of the body is read; the body is capped at `max_body_bytes` (content-length first,
    then counted while reading). Raising ApiError gives the usual error body; any other exception, a
    ValidationError included, is a bug: logged, 500 INTERNAL. A handler turns its request body's ValidationError
    into a 422 with `parse_body`."""

    path: str
    handler: FastHandler
    auth: FastAuth | None = None
    max_body_bytes: int = MAX_FAST_BODY_BYTES
    refusal: FastRefusal = _error_bytes
    doc: FastDoc | None = None


In = TypeVar("In", bound=BaseModel)


def parse_body(model: type[In], raw: bytes) -> In:
    """The request body as `model`, or the 422 every other route gives for a body that fails its model. Only
    here does a ValidationError mean bad input: one raised deeper (a stored answer that no longer parses) is a
    bug and stays a 500."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(422, *validation_problem(exc.errors(include_url=False, include_input=False))) from None


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def read_capped_body(receive: Receive, headers: Headers, max_bytes: int) -> bytes:
    """The request body, refused (_BodyTooLarge) as soon as it is known to exceed `max_bytes`: by its
    content-length before anything is read, else while reading (chunked uploads, lying lengths)."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "BAD_REQUEST", "content-length is not a number")
        if int(declared) > max_bytes:
            raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FastEndpoint:
    """The ASGI app of one fast route, mounted as a plain `starlette.routing.Route(path, endpoint,
    methods=["POST"])` at the front of the router (`fast_routes`): Starlette matches the path, answers other
    methods with the app's usual 405 and `Allow`, and sets `scope["route"]` (the metrics label). What it skips is
    FastAPI's per-route machinery (dependency solving, body parsing, exception middleware around the call:
    about 70 µs a request, measured, which at 500 settles a second, two hops each, is a tenth of a core). The
    error bodies are the ones install_error_handlers gives."""

    def __init__(self, route: FastRoute) -> None:
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.route
        state = scope["app"].state
        headers = Headers(scope=scope)
        try:
            if route.auth is not None:
                route.auth(state, headers)
            raw = await read_capped_body(receive, headers, route.max_body_bytes)
            status, content = await route.handler(state, headers, raw)
        except ApiError as exc:
            status, content = route.refusal(exc.status, exc.code, exc.message)
        except _BodyTooLarge:
            status, content = route.refusal(413, "BODY_TOO_LARGE",
                                            f"the request body is over {route.max_body_bytes} bytes")
        except _Disconnected:
            return  # nobody is waiting for an answer
        except Exception:
            log.exception("unhandled error on POST %s", route.path)
            status, content = route.refusal(500, "INTERNAL", INTERNAL_MESSAGE)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})


class _CountedRoute(Route):
    """A Starlette Route that names itself in `scope["route"]`, as FastAPI's routes do (the metrics label)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def add_fast_routes(app: FastAPI, routes: Sequence[FastRoute]) -> None:
    """Each fast route as a Starlette Route in front of every other route of the app, and documented in the
    app's OpenAPI document (call before install_truthful_errors, which then gives its 4xx the error body)."""
    app.router.routes[0:0] = [_CountedRoute(route.path, FastEndpoint(route), methods=["POST"],
                                            name=f"fast:{route.path}", include_in_schema=False)
                              for route in routes]
    documented = [route for route in routes if route.doc is not None]
    if not documented:
        return
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for route in documented:
                assert route.doc is not None
                schema.setdefault("paths", {}).setdefault(route.path, {})["post"] = _fast_operation(
                    route, route.doc, components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _schema_of(part: type[BaseModel] | dict[str, Any], mode: Literal["validation", "serialization"],
               components: dict[str, Any]) -> dict[str, Any]:
    """A model's schema among the document's components (its nested models too), referenced; a written-down
    schema as it is."""
    if isinstance(part, dict):
        return part
    schema = part.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(part.__name__, schema)
    return {"$ref": f"#/components/schemas/{part.__name__}"}


def _fast_operation(route: FastRoute, doc: FastDoc, components: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "Answered"}
    if doc.answer is not None:
        answer["content"] = {"application/json": {"schema": _schema_of(doc.answer, "serialization", components)}}
    operation: dict[str, Any] = {
        "summary": doc.summary, "operationId": "fast_" + "".join(c if c.isalnum() else "_" for c in route.path),
        "responses": {"200": answer,
                      "413": {"description": f"The body is over {route.max_body_bytes} bytes; nothing read"},
                      "422": {"description": "The body does not read as its schema; nothing changed"}}}
    if doc.tags:
        operation["tags"] = list(doc.tags)
    if doc.body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _schema_of(doc.body, "validation", components)}}}
    if doc.bearer:
        operation["responses"]["401"] = {"description": "Missing or wrong token in `Authorization: Bearer` "
                                                        "(checked before the body is read)"}
    return operation


def add_operational_routes(app: FastAPI, registry: CollectorRegistry, readiness: list[ReadinessCheck]) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> Response:
        body: dict[str, object] = {"status": "ready"}
        for check in readiness:
            try:
                details = await check()
            except Exception as exc:  # any failing dependency means "not ready", never a crash
                return error_response(503, "NOT_READY", f"{getattr(check, '__name__', 'check')}: {exc}")
            if isinstance(details, dict):
                body.update(details)  # e.g. consumer_lag: what the operator console's overview shows
        return ORJSONResponse(body)

    @app.get("/metrics", tags=["ops"], response_class=Response, responses={200: {  # Prometheus text, not JSON
        "description": "Prometheus text exposition", "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def create_app(title: str, lifespan: Any, readiness: list[ReadinessCheck],
               fast_routes: list[FastRoute] | None = None) -> tuple[FastAPI, CollectorRegistry]:
    registry = CollectorRegistry()
    # FastAPI's OpenTelemetry hooks off: the services export Prometheus metrics (MetricsMiddleware) and no OTel
    # provider. Left on, FastAPI asked OpenTelemetry for its providers on every request (environment lookups
    # included), about 1.5% of the gateway's CPU per settle under py-spy (issue 9).
    app = FastAPI(title=title, lifespan=lifespan, default_response_class=ORJSONResponse,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    install_error_handlers(app)
    if fast_routes:
        add_fast_routes(app, fast_routes)  # before the next line, which documents their 4xx bodies too
    install_truthful_errors(app)  # every 4xx documented with the error body (shared/openapi.py)
    add_operational_routes(app, registry, readiness)
    app.add_middleware(MetricsMiddleware, registry=registry)  # added last, so outermost: it sees every request
    return app, registry


def bearer_token(request: Request | Headers) -> str | None:
    headers = request if isinstance(request, Headers) else request.headers
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


async def require_operator(request: Request) -> None:
    """FastAPI dependency of the operators' routes, in every service (each keeps its settings in
    `app.state.ctx`). `async`: FastAPI runs a plain `def` dependency in a worker thread."""
    require_static_token(request, request.app.state.ctx.settings.operator_token, "operator")


async def require_internal(request: Request) -> None:
    """FastAPI dependency of the service-to-service routes, in every service."""
    require_static_token(request, request.app.state.ctx.settings.internal_token, "internal")


def require_static_token(request: Request | Headers, expected: str, what: str) -> None:
    token = bearer_token(request)
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(401, "UNAUTHENTICATED", f"missing or wrong {what} token")
