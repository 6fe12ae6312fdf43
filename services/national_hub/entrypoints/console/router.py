"""The operator console (API.md "Operator console"): server-rendered pages at /console/ in Chinese.

Every page reads through the operator API's own code: the route functions of entrypoints/ops_api.py and api.py
are called with the hub's context (what their `ctx: CtxDep` gets when an API client calls them) and, for an
action, the console's request, so a page shows exactly what the API answers and an action (closing a window,
resolving an alert, verifying the audit chains) runs the same validation, unit of work, idempotency wrapper and
audit entry. The only reads of its own are the overview's "today" counters and health probes (queries.py).

Sign-in exchanges the operator token for a signed session cookie (session.py); each POST needs the session's
CSRF token; a page without a session redirects to the sign-in page."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.national_hub.entrypoints import api, ops_api
from services.national_hub.entrypoints.console import display, queries
from services.national_hub.entrypoints.console.session import (
    COOKIE_NAME,
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    SessionKeys,
    csrf_ok,
    open_session,
    read_session,
    token_matches,
)
from services.national_hub.service_layer import activity as activity_service
from services.national_hub.service_layer.context import HubContext
from shared.clock import SHANGHAI
from shared.ids import InvalidIdNo, normalize_id_no
from shared.web import ApiError

HERE = Path(__file__).parent
PREFIX = "/console"
# Sign-in form's own CSRF nonce (no session exists yet): a short-lived cookie the form's token is bound to.
PRE_COOKIE = "yibao_console_pre"
PRE_COOKIE_TTL_S = 1800

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
templates.filters.update(yuan=display.yuan, when=display.shanghai_time, province=display.province,
                         label=display.label, name=display.masked_name, masked=display.masked_text)
templates.globals.update(prefix=PREFIX)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# Content-Security-Policy: scripts only from the hub itself (vendored files, no inline script), so an injected
# string can never run. ECharts and htmx set inline styles, hence 'unsafe-inline' for styles only.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

NAV = [("overview", "总览", "/"), ("stats", "统计", "/stats"), ("clearing", "清算", "/clearing"),
       ("alerts", "风险预警", "/alerts"), ("lookup", "查询", "/lookup"), ("audit", "审计", "/audit")]


class NotSignedIn(Exception):
    def __init__(self, expired: bool) -> None:
        self.expired = expired


def _ctx(request: Request) -> HubContext:
    ctx: HubContext = request.app.state.ctx
    return ctx


def _keys(request: Request) -> SessionKeys:
    settings = _ctx(request).settings
    return SessionKeys.from_settings(settings.token_key, settings.operator_token)


def _now_s(request: Request) -> float:
    return _ctx(request).clock.now().timestamp()


def _session(request: Request) -> Session:
    cookie = request.cookies.get(COOKIE_NAME)
    session = read_session(_keys(request), cookie, _now_s(request))
    if session is None:
        raise NotSignedIn(expired=cookie is not None)
    return session


def render(request: Request, template: str, status: int = 200, session: Session | None = None,
           **context: Any) -> HTMLResponse:
    now = _ctx(request).clock.now().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    page = templates.get_template(template).render(
        request=request, nav=NAV, csrf=session.csrf_token(_keys(request)) if session else None,
        signed_in=session is not None, now=now, **context)
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def not_found(request: Request, session: Session, what: str, ident: str) -> HTMLResponse:
    return render(request, "not_found.html", 404, session, active=None, what=what, ident=ident)


async def _require_csrf(request: Request, session: Session) -> dict[str, str] | Response:
    """The form of a POST, or a 403 page when its CSRF token is missing or wrong (nothing has run yet)."""
    form = await read_form(request)
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not csrf_ok(_keys(request), session, given):
        return render(request, "forbidden.html", 403, session, active=None)
    return form


# The console's forms are small; anything bigger is not one of them.
MAX_FORM_BYTES = 16_384


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (what every console form posts), parsed from the raw body, which stays readable for
    the API code the action then calls (run_idempotent hashes it). Anything else reads as an empty form."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES or not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(pairs)


def _with_idempotency_key(request: Request, key: str) -> Request:
    """The same request, carrying the form's Idempotency-Key as the API expects it in a header (the body read
    already stays with it, for run_idempotent's hash)."""
    if not key or len(key) > 200:
        return request
    scope = dict(request.scope)
    scope["headers"] = [*request.scope["headers"], (b"idempotency-key", key.encode())]
    keyed = Request(scope, request.receive)
    keyed._body = request._body  # Starlette keeps the body read by read_form here
    return keyed


def _json(response: Response) -> Any:
    return orjson.loads(bytes(response.body))


def install(app: FastAPI) -> None:
    """Adds the console's pages and its static files (vendored htmx and ECharts) to the hub's app."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(NotSignedIn)
    async def _signin(request: Request, exc: NotSignedIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = request.url.path.rsplit("/", 1)[0] or f"{PREFIX}/"
        location = f"{PREFIX}/signin?next={quote(target)}" + ("&expired=1" if exc.expired else "")
        if request.headers.get("hx-request") == "true":
            # An htmx request would follow a redirect and swap the sign-in page into a fragment: have htmx
            # load the whole sign-in page instead.
            response: Response = Response(status_code=200, headers={"HX-Redirect": location})
        else:
            response = RedirectResponse(location, status_code=303)
        if exc.expired:
            response.delete_cookie(COOKIE_NAME, path=PREFIX)
        return response


# ------------------------------------------------------------------------------------------------ sign-in


def _safe_next(value: str | None) -> str:
    """Only a console path: an open redirect to another site after sign-in is refused."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/"


@router.get("/signin")
async def signin_page(request: Request, next: str | None = None, expired: str | None = None,
                      signed_out: str | None = None) -> Response:
    message = ("会话已过期，请重新登录。" if expired else "您已安全退出。" if signed_out else None)
    return _signin_form(request, _safe_next(next), message, 200)


def _signin_form(request: Request, next_path: str, message: str | None, status: int) -> Response:
    nonce = request.cookies.get(PRE_COOKIE) or ""
    keys = _keys(request)
    fresh = len(nonce) < 16
    if fresh:
        nonce = secrets.token_urlsafe(18)
    response = render(request, "signin.html", status, None, active=None, next=next_path, message=message,
                      signin_csrf=keys.sign(f"signin|{nonce}"))
    if fresh:
        response.set_cookie(PRE_COOKIE, nonce, max_age=PRE_COOKIE_TTL_S, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await read_form(request)
    keys = _keys(request)
    next_path = _safe_next(form.get("next"))
    nonce = request.cookies.get(PRE_COOKIE) or ""
    given = form.get(CSRF_FIELD, "")
    if len(nonce) < 16 or not token_matches(given, keys.sign(f"signin|{nonce}")):
        return render(request, "forbidden.html", 403, None, active=None)
    if not token_matches(form.get("token", ""), _ctx(request).settings.operator_token):
        return _signin_form(request, next_path, "令牌不正确，请检查后重试。", 401)
    _, cookie = open_session(keys, _now_s(request))
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(COOKIE_NAME, cookie, max_age=8 * 3600, path=PREFIX, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    response.delete_cookie(PRE_COOKIE, path=PREFIX)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    session = _session(request)
    form = await _require_csrf(request, session)
    if isinstance(form, Response):
        return form
    response = RedirectResponse(f"{PREFIX}/signin?signed_out=1", status_code=303)
    response.delete_cookie(COOKIE_NAME, path=PREFIX)
    return response


# ---------------------------------------------------------------------------------------------- overview


@router.get("/")
async def overview(request: Request) -> Response:
    session = _session(request)
    ctx = _ctx(request)
    health = await queries.health(request.app, ctx)
    today = await queries.today(ctx)
    open_alerts = await ops_api.alerts(_ctx(request), state="open", rule_id=None)
    windows = await ops_api.settlement_windows(_ctx(request))
    return render(request, "overview.html", 200, session, active="overview", health=health, today=today,
                  open_alerts=open_alerts, last_window=windows[-1] if windows else None, windows=len(windows))


# -------------------------------------------------------------------------------------------- statistics

STAT_FILTERS = ("kind", "use", "scope", "province")


def _month_shift(month: str, delta: int) -> str:
    year, number = int(month[:4]), int(month[5:7])
    index = year * 12 + number - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    if filters.get("kind") and row["kind"] != filters["kind"]:
        return False
    if filters.get("use") and row["use"] != filters["use"]:
        return False
    if filters.get("scope") and (row.get("scope") or "none") != filters["scope"]:
        return False
    return not (filters.get("province") and filters["province"] not in (row["from_admdvs"], row["to_admdvs"]))


def stats_charts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Chart data (amounts in fen; the browser divides for yuan labels): by month and use, and scope shares."""
    months = sorted({r["month"] for r in rows})
    uses = sorted({r["use"] for r in rows})
    by_month_use = {(r["month"], r["use"]): 0 for r in rows}
    scopes: dict[str, int] = {}
    for r in rows:
        by_month_use[(r["month"], r["use"])] += r["amount_fen"]
        scope = r.get("scope") or "none"
        scopes[scope] = scopes.get(scope, 0) + r["amount_fen"]
    return {"months": months,
            "series": [{"name": display.label(use), "data": [by_month_use.get((m, use), 0) for m in months]}
                       for use in uses],
            "scopes": [{"name": display.label(scope), "value": fen} for scope, fen in sorted(scopes.items())]}


@router.get("/stats")
async def stats_page(request: Request, from_month: str | None = Query(None, alias="from"),
                     to_month: str | None = Query(None, alias="to"), kind: str = "", use: str = "", scope: str = "",
                     province: str = "") -> Response:
    session = _session(request)
    this_month = _ctx(request).clock.now().astimezone(SHANGHAI).strftime("%Y-%m")
    period = {"from": from_month or _month_shift(this_month, -11), "to": to_month or this_month}
    filters = {"kind": kind, "use": use, "scope": scope, "province": province}
    try:
        result = await ops_api.stats(_ctx(request), period["from"], period["to"], "json")
    except ApiError as refused:
        return render(request, "stats.html", refused.status, session, active="stats", period=period,
                      filters=filters, error=refused.message, rows=[], charts=None, choices={}, totals=None)
    rows = [r for r in result["rows"] if _matches(r, filters)]
    every = result["rows"]
    choices = {"kind": sorted({r["kind"] for r in every}), "use": sorted({r["use"] for r in every}),
               "scope": sorted({r.get("scope") or "none" for r in every}),
               "province": sorted({r["from_admdvs"] for r in every} | {r["to_admdvs"] for r in every})}
    totals = {"person_times": sum(r["person_times"] for r in rows), "amount_fen": sum(r["amount_fen"] for r in rows)}
    return render(request, "stats.html", 200, session, active="stats", period=period, filters=filters, error=None,
                  rows=rows, charts=stats_charts(rows), choices=choices, totals=totals)


@router.get("/stats.csv")
async def stats_csv(request: Request, from_month: str = Query(alias="from"),
                    to_month: str = Query(alias="to")) -> Response:
    """The API's own CSV (GET /v1/ops/stats?format=csv), for the browser's session instead of a bearer token."""
    _session(request)
    try:
        answer: Response = await ops_api.stats(_ctx(request), from_month, to_month, "csv")
    except ApiError as refused:
        return Response(refused.message, status_code=refused.status, media_type="text/plain; charset=utf-8")
    return answer


# ---------------------------------------------------------------------------------------------- clearing


def pair_matrix(window: dict[str, Any]) -> dict[str, Any]:
    """Net positions per pair as a matrix: rows pay, columns receive (fen); every province of the window on both
    axes, in code order."""
    pairs = window.get("net_by_pair", [])
    provinces = sorted({p["payer_admdvs"] for p in pairs} | {p["payee_admdvs"] for p in pairs}
                       | {p["admdvs"] for p in window.get("net_by_province", [])})
    cells = {(p["payer_admdvs"], p["payee_admdvs"]): p["net_fen"] for p in pairs}
    return {"provinces": provinces,
            "rows": [[cells.get((payer, payee)) for payee in provinces] for payer in provinces],
            "heat": [[j, i, cells[(payer, payee)]] for i, payer in enumerate(provinces)
                     for j, payee in enumerate(provinces) if (payer, payee) in cells]}


@router.get("/clearing")
async def clearing_page(request: Request, window: int | None = None, closed: int | None = None) -> Response:
    session = _session(request)
    windows = await ops_api.settlement_windows(_ctx(request))
    chosen = windows[-1] if windows else None
    if window is not None:
        chosen = next((w for w in windows if w["window_id"] == window), None)
        if chosen is None:
            return not_found(request, session, "结算窗口", f"#{window}")
    return render(request, "clearing.html", 200, session, active="clearing", windows=list(reversed(windows)),
                  window=chosen, matrix=pair_matrix(chosen) if chosen else None,
                  just_closed=closed is not None and chosen is not None and chosen["window_id"] == closed)


@router.get("/clearing/close")
async def clearing_confirm(request: Request) -> Response:
    session = _session(request)
    windows = await ops_api.settlement_windows(_ctx(request))
    # One key per confirmation page: submitting it twice (a double click, a reload) closes one window.
    return render(request, "clearing_confirm.html", 200, session, active="clearing",
                  last_window=windows[-1] if windows else None, idempotency_key=secrets.token_hex(16))


@router.post("/clearing/close")
async def clearing_close(request: Request) -> Response:
    session = _session(request)
    form = await _require_csrf(request, session)
    if isinstance(form, Response):
        return form
    keyed = _with_idempotency_key(request, form.get("idempotency_key", ""))
    answer = await ops_api.close_window(keyed, _ctx(request))
    body = _json(answer)
    if answer.status_code != 200:
        return render(request, "clearing_confirm.html", answer.status_code, session, active="clearing",
                      last_window=None, error=body.get("error", {}).get("message"))
    return RedirectResponse(f"{PREFIX}/clearing?window={body['window_id']}&closed={body['window_id']}",
                            status_code=303)


# ------------------------------------------------------------------------------------------------ alerts


@router.get("/alerts")
async def alerts_page(request: Request, state: str = "open", rule_id: str = "") -> Response:
    session = _session(request)
    state = state if state in ("open", "resolved", "all") else "open"
    alerts = await ops_api.alerts(_ctx(request), state=None if state == "all" else state, rule_id=rule_id or None)
    rules = await ops_api.risk_rules(_ctx(request))
    return render(request, "alerts.html", 200, session, active="alerts", alerts=list(reversed(alerts)),
                  state=state, rule_id=rule_id, rules=rules)


async def _alert(request: Request, alert_id: str) -> dict[str, Any] | None:
    alerts = await ops_api.alerts(_ctx(request), state=None, rule_id=None)
    return next((a for a in alerts if a["alert_id"] == alert_id), None)


@router.get("/alerts/{alert_id}")
async def alert_page(request: Request, alert_id: str) -> Response:
    session = _session(request)
    alert = await _alert(request, alert_id)
    if alert is None:
        return not_found(request, session, "风险预警", alert_id)
    return render(request, "alert.html", 200, session, active="alerts", alert=alert, result=None, error=None,
                  form={})


@router.post("/alerts/{alert_id}/resolve")
async def alert_resolve(request: Request, alert_id: str) -> Response:
    session = _session(request)
    form = await _require_csrf(request, session)
    if isinstance(form, Response):
        return form
    alert = await _alert(request, alert_id)
    if alert is None:
        return not_found(request, session, "风险预警", alert_id)
    body = {"decision": form.get("decision", ""), "reviewer": form.get("reviewer", "").strip(),
            "note": form.get("note", "").strip()}
    answer = await ops_api.resolve_alert(request, _ctx(request), alert_id, body)
    result = _json(answer)
    if answer.status_code != 200:
        return render(request, "alert.html", answer.status_code, session, active="alerts", alert=alert,
                      result=None, error=_refusal(result), form=body)
    return render(request, "alert.html", 200, session, active="alerts", alert=result, result=result, error=None,
                  form={})


_REFUSALS = {
    "VALIDATION_ERROR": "请选择处理决定并填写审核人（备注最多 200 字）。",
    "ALERT_HOLDS_NOTHING": "此预警没有冻结任何转账：只能选择“无异常”。",
    "ALERT_ALREADY_RESOLVED": "此预警已被处理。",
    "ALERT_NOT_FOUND": "没有这条预警。",
}


def _refusal(body: Any) -> str:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    return _REFUSALS.get(str(error.get("code", "")), str(error.get("message", "操作未成功")))


# ------------------------------------------------------------------------------------------------ lookup


@router.get("/lookup")
async def lookup_page(request: Request, transfer_id: str | None = None) -> Response:
    session = _session(request)
    if transfer_id and transfer_id.strip():
        return RedirectResponse(f"{PREFIX}/transfers/{quote(transfer_id.strip(), safe='')}", status_code=303)
    return render(request, "lookup.html", 200, session, active="lookup", error=None, form={})


@router.get("/transfers/{transfer_id}")
async def trace_page(request: Request, transfer_id: str) -> Response:
    session = _session(request)
    try:
        trace = await api.transfer_trace(_ctx(request), transfer_id)
    except ApiError as refused:
        if refused.status == 404:
            return not_found(request, session, "转账", transfer_id)
        raise
    return render(request, "trace.html", 200, session, active="lookup", trace=trace)


@router.post("/persons")
async def person_page(request: Request) -> Response:
    """A person's activity by ID number: a POST, so the ID never lands in a URL, a log line or the history."""
    session = _session(request)
    form = await _require_csrf(request, session)
    if isinstance(form, Response):
        return form
    id_no = form.get("id_no", "").strip()
    psn_no = form.get("psn_no", "").strip()  # from an alert's page: the person number the alert carries
    reviewer = form.get("reviewer", "").strip()
    shown = {"reviewer": reviewer, "from": form.get("from", ""), "to": form.get("to", "")}

    def again(message: str, status: int = 422) -> Response:
        return render(request, "lookup.html", status, session, active="lookup", error=message, form=shown)

    if not psn_no:
        try:
            normalize_id_no(id_no)
        except InvalidIdNo:
            return again("身份证号码格式不正确（18 位，校验码须符合 GB 11643）。")
    if not reviewer:
        return again("请填写审核人：每次查询个人信息都会记入访问日志。")
    try:
        if psn_no:
            activity = await activity_service.person_activity_by_psn(
                _ctx(request), psn_no, form.get("from") or None, form.get("to") or None, reviewer)
        else:
            activity = await ops_api.person_activity(_ctx(request), id_no, form.get("from") or None,
                                                     form.get("to") or None, reviewer, None)
    except ApiError as refused:
        if refused.status == 404:
            return not_found(request, session, "参保人", "（已隐藏）")
        return again(refused.message, refused.status)
    return render(request, "person.html", 200, session, active="lookup", activity=activity)


# ------------------------------------------------------------------------------------------------- audit


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    session = _session(request)
    heads = await ops_api.audit_heads(_ctx(request))
    return render(request, "audit.html", 200, session, active="audit", heads=heads, verdicts=None)


@router.post("/audit/verify")
async def audit_verify(request: Request) -> Response:
    session = _session(request)
    form = await _require_csrf(request, session)
    if isinstance(form, Response):
        return form
    started = time.perf_counter()
    verdicts = await ops_api.audit_verify(_ctx(request))
    took_ms = (time.perf_counter() - started) * 1000
    if request.headers.get("hx-request") == "true":
        return render(request, "audit_verdicts.html", 200, session, verdicts=verdicts, took_ms=took_ms)
    heads = await ops_api.audit_heads(_ctx(request))
    return render(request, "audit.html", 200, session, active="audit", heads=heads, verdicts=verdicts,
                  took_ms=took_ms)
