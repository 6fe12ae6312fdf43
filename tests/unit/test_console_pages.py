"""The operator console's pages over the hub's real app and its own SQLite database (migrated by Alembic), no
browser and no Kafka: sign-in and its refusals, every page's Chinese labels and masked data, the actions (close a
window, resolve an alert, verify the audit chains) through the operator API's code, CSRF refusals that change
nothing, not-found pages, the person lookup's bad ID number, and the vendored files' checksums."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.national_hub.adapters.ops_tables import SettlementWindow
from services.national_hub.adapters.tables import ClearingObligation, HubTransfer, TransferHop
from services.national_hub.bootstrap import MIGRATIONS, bootstrap
from services.national_hub.config import HubSettings
from services.national_hub.entrypoints.console import router
from services.national_hub.entrypoints.console import session as console_session
from services.national_hub.service_layer import ops, risk
from services.national_hub.service_layer.context import HubContext
from shared.clock import FixedClock
from shared.db import ReadView, UnitOfWork, open_database
from shared.ids import make_id_no
from shared.tables import table

NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
TOKEN = "console-unit-operator-token"
CONSOLE = Path(__file__).parents[2] / "services" / "national_hub" / "entrypoints" / "console"
# An ID number in clear (not inside a longer hex string such as an audit hash).
CLEAR_ID = re.compile(r"(?<![0-9a-fA-F])\d{17}[\dX](?![0-9a-fA-F])")
PAGES = ["/console/", "/console/stats", "/console/clearing", "/console/alerts", "/console/lookup", "/console/audit"]
HEADINGS = {"/console/": "总览", "/console/stats": "统计", "/console/clearing": "清算", "/console/alerts": "风险预警",
            "/console/lookup": "查询", "/console/audit": "审计"}


class Console:
    def __init__(self, http: httpx.AsyncClient, ctx: HubContext, clock: FixedClock, alert_id: str) -> None:
        self.http = http
        self.ctx = ctx
        self.clock = clock
        self.alert_id = alert_id

    async def sign_in(self, token: str = TOKEN) -> httpx.Response:
        form = await self.http.get("/console/signin")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text
        return await self.http.post("/console/signin", data={"token": token, "csrf_token": csrf.group(1),
                                                             "next": "/console/"})

    async def csrf(self, page: str = "/console/") -> str:
        answer = await self.http.get(page)
        found = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
        assert found, answer.text
        return found.group(1)

    async def windows(self) -> int:
        async with ReadView(self.ctx.db) as view:
            return int((await view.execute(sa.select(sa.func.count()).select_from(
                table(SettlementWindow)))).scalar_one())


async def seed(ctx: HubContext) -> str:
    """A credited cross-province transfer (its trace, its statistics fact, its obligation) and an open alert."""
    async with UnitOfWork(ctx.db) as uow:
        await uow.execute(sa.insert(table(HubTransfer)).values(
            transfer_id="T-console-1", binding_id="B1", giver_psn_no="P640000A", giver_admdvs="640000",
            receiver_psn_no="P620000B", receiver_admdvs="620000", amount_fen=123_450, state="CREDITED",
            accepted_at=NOW, routed_at=NOW, deadline_at=NOW, decided_at=NOW))
        for hop in ("REQUESTED", "ROUTED", "CREDITED"):
            await uow.execute(sa.insert(table(TransferHop)).values(
                transfer_id="T-console-1", hop=hop, service="hub", at=NOW))
        await ops.record_use(uow, ref="TRANSFER:T-console-1", from_admdvs="640000", to_admdvs="620000",
                             use="transfer", person_key="P620000B", amount_fen=123_450, at=NOW, kind="transfer",
                             scope="cross_province", payer_psn_no="P640000A")
        await uow.execute(sa.insert(table(ClearingObligation)).values(
            kind="TRANSFER", ref="TRANSFER:T-console-1", debtor_admdvs="640000", creditor_admdvs="620000",
            amount_fen=123_450, created_at=NOW))
        alert_id = await risk.raise_alert(
            ctx, uow, rule_id="LARGE_REMOTE_PAYMENT", subject_key="P640000A",
            subject={"psn_no": "P640000A", "name_masked": "王*明"}, ref="test-alert-1",
            detail={"amount_fen": 150_000, "note": f"id {make_id_no('64010219800101123')}"})
        await uow.commit()
    assert alert_id
    return alert_id


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    settings = HubSettings(home=tmp_path, database_url="", operator_token=TOKEN, token_key="console-unit-token-key",
                           id_hash_key="console-unit-id-key", internal_token="console-unit-internal", provinces="",
                           gateway_url="http://127.0.0.1:9")  # nothing listens on port 9: shown unreachable
    clock = FixedClock(NOW)
    db = await open_database(settings, "hub", MIGRATIONS)
    ctx = HubContext(settings=settings, db=db, clock=clock)
    app = bootstrap(settings, clock)
    app.state.ctx = ctx  # the lifespan (Kafka) does not run under ASGITransport
    alert_id = await seed(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as http:
        yield Console(http, ctx, clock, alert_id)
    await db.dispose()


async def test_every_page_without_a_session_redirects_to_sign_in(console: Console) -> None:
    for page in [*PAGES, f"/console/alerts/{console.alert_id}", "/console/transfers/T-console-1"]:
        answer = await console.http.get(page)
        assert answer.status_code == 303, page
        assert answer.headers["location"].startswith("/console/signin?next="), page
    closing = await console.http.post("/console/clearing/close", data={"csrf_token": "x"})
    assert closing.status_code == 303 and await console.windows() == 0


async def test_a_wrong_token_gets_the_sign_in_page_again_with_a_message(console: Console) -> None:
    answer = await console.sign_in("not-the-token")
    assert answer.status_code == 401 and "令牌不正确" in answer.text and "Traceback" not in answer.text
    assert "yibao_console=" not in answer.headers.get("set-cookie", "")


async def test_sign_in_sets_an_httponly_strict_cookie_and_every_page_renders(console: Console) -> None:
    answer = await console.sign_in()
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("yibao_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    for page in PAGES:
        page_answer = await console.http.get(page)
        assert page_answer.status_code == 200, (page, page_answer.text[:500])
        assert f"<h1>{HEADINGS[page]}</h1>" in page_answer.text
        assert 'lang="zh-CN"' in page_answer.text and "script-src 'self'" in page_answer.headers[
            "content-security-policy"]
        assert not CLEAR_ID.search(page_answer.text), page
    overview = (await console.http.get("/console/")).text
    assert "¥1,234.50" in overview and "今日转账" in overview and "待处理预警" in overview
    stats = (await console.http.get("/console/stats?from=2026-01&to=2026-03")).text
    assert "¥1,234.50" in stats and "跨省" in stats and "宁夏 640000" in stats and "下载 CSV" in stats


async def test_statistics_filters_and_the_apis_csv(console: Console) -> None:
    await console.sign_in()
    none = (await console.http.get("/console/stats?from=2026-03&to=2026-03&use=pharmacy")).text
    assert "所选期间没有数据" in none
    bad = await console.http.get("/console/stats?from=2026-13&to=2026-03")
    assert bad.status_code == 422 and "YYYY-MM" in bad.text
    csv = await console.http.get("/console/stats.csv?from=2026-03&to=2026-03")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "123450" in csv.text and "640000" in csv.text


async def test_closing_a_window_asks_first_and_shows_the_net_positions(console: Console) -> None:
    await console.sign_in()
    confirm = await console.http.get("/console/clearing/close")
    assert "确认关闭窗口" in confirm.text and await console.windows() == 0
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text)
    assert csrf
    closed = await console.http.post("/console/clearing/close", data={"csrf_token": csrf.group(1)})
    assert closed.status_code == 303 and await console.windows() == 1
    page = await console.http.get(closed.headers["location"])
    assert "已关闭结算窗口 #1" in page.text and "-¥1,234.50" in page.text and "甘肃 620000" in page.text
    assert "省际净头寸矩阵" in page.text


async def test_submitting_one_confirmation_twice_closes_one_window(console: Console) -> None:
    await console.sign_in()
    confirm = await console.http.get("/console/clearing/close")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', confirm.text)
    assert csrf and key
    form = {"csrf_token": csrf.group(1), "idempotency_key": key.group(1)}
    first = await console.http.post("/console/clearing/close", data=form)
    again = await console.http.post("/console/clearing/close", data=form)  # a double click, a reload
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"] and await console.windows() == 1


async def test_a_forged_or_missing_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    await console.sign_in()
    for data in ({}, {"csrf_token": "forged"}):
        answer = await console.http.post("/console/clearing/close", data=data)
        assert answer.status_code == 403 and "CSRF" in answer.text
        resolve = await console.http.post(f"/console/alerts/{console.alert_id}/resolve",
                                          data={**data, "decision": "dismiss", "reviewer": "x"})
        assert resolve.status_code == 403
    assert await console.windows() == 0
    page = await console.http.get(f"/console/alerts/{console.alert_id}")
    assert "提交决定" in page.text  # still open


async def test_an_alert_is_dismissed_through_the_api_code_and_shows_its_result(console: Console) -> None:
    await console.sign_in()
    page = await console.http.get(f"/console/alerts/{console.alert_id}")
    assert "大额异地支付" in page.text and "王*明" in page.text and "¥1,500.00" in page.text
    assert not CLEAR_ID.search(page.text)
    csrf = await console.csrf(f"/console/alerts/{console.alert_id}")
    refused = await console.http.post(f"/console/alerts/{console.alert_id}/resolve",
                                      data={"csrf_token": csrf, "decision": "release", "reviewer": "张审核"})
    assert refused.status_code == 422 and "没有冻结任何转账" in refused.text
    done = await console.http.post(f"/console/alerts/{console.alert_id}/resolve",
                                   data={"csrf_token": csrf, "decision": "dismiss", "reviewer": "张审核",
                                         "note": "核实无误"})
    assert done.status_code == 200 and "已处理" in done.text and "张审核" in done.text
    again = await console.http.post(f"/console/alerts/{console.alert_id}/resolve",
                                    data={"csrf_token": csrf, "decision": "dismiss", "reviewer": "李"})
    assert again.status_code == 409 and "已被处理" in again.text
    resolved = (await console.http.get("/console/alerts?state=resolved")).text
    assert console.alert_id in resolved


async def test_unknown_ids_get_a_not_found_page(console: Console) -> None:
    await console.sign_in()
    for path in ("/console/alerts/A-nope", "/console/transfers/T-nope", "/console/clearing?window=99"):
        answer = await console.http.get(path)
        assert answer.status_code == 404 and "未找到" in answer.text, path
    trace = await console.http.get("/console/lookup?transfer_id=T-console-1", follow_redirects=True)
    assert trace.status_code == 200 and "CREDITED" in trace.text and "¥1,234.50" in trace.text


async def test_a_person_lookup_with_a_bad_id_number_gets_the_form_again(console: Console) -> None:
    await console.sign_in()
    csrf = await console.csrf("/console/lookup")
    bad = await console.http.post("/console/persons", data={"csrf_token": csrf, "id_no": "640102198001011230",
                                                            "reviewer": "张审核"})
    assert bad.status_code == 422 and "身份证号码格式不正确" in bad.text and 'name="id_no"' in bad.text
    unknown = await console.http.post("/console/persons", data={
        "csrf_token": csrf, "id_no": make_id_no("64010219800101123"), "reviewer": "张审核"})
    assert unknown.status_code == 404 and "未找到" in unknown.text and not CLEAR_ID.search(unknown.text)


async def test_audit_heads_and_verify(console: Console) -> None:
    await console.sign_in()
    page = await console.http.get("/console/audit")
    assert "hub" in page.text and "校验全部审计链" in page.text
    csrf = await console.csrf("/console/audit")
    verdict = await console.http.post("/console/audit/verify", data={"csrf_token": csrf},
                                      headers={"HX-Request": "true"})
    assert verdict.status_code == 200 and "<html" not in verdict.text and "校验结果" in verdict.text


async def test_an_expired_session_goes_back_to_sign_in(console: Console) -> None:
    await console.sign_in()
    assert (await console.http.get("/console/")).status_code == 200
    console.clock.advance(console_session.CONSOLE_SESSION_TTL_S + 1)
    answer = await console.http.get("/console/stats")
    assert answer.status_code == 303 and "expired=1" in answer.headers["location"]
    page = await console.http.get(answer.headers["location"])
    assert "会话已过期" in page.text


async def test_sign_out_ends_the_session(console: Console) -> None:
    await console.sign_in()
    csrf = await console.csrf()
    out = await console.http.post("/console/signout", data={"csrf_token": csrf})
    assert out.status_code == 303 and "signed_out=1" in out.headers["location"]
    assert (await console.http.get("/console/")).status_code == 303


def test_the_vendored_files_match_their_recorded_checksums() -> None:
    vendor = CONSOLE / "static" / "vendor"
    table = (vendor / "VENDOR.md").read_text()
    recorded: dict[str, Any] = dict(re.findall(r"\| `([\w.-]+\.js)` \|[^\n]*?\| `([0-9a-f]{64})` \|", table))
    assert set(recorded) == {"htmx-2.0.4.min.js", "echarts-5.6.0.min.js"}
    for name, digest in recorded.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
        assert f"vendor/{name}" in "".join(p.read_text() for p in (CONSOLE / "templates").glob("*.html"))


async def test_an_htmx_request_without_a_session_is_sent_to_sign_in_whole(console: Console) -> None:
    answer = await console.http.post("/console/audit/verify", data={"csrf_token": "x"},
                                     headers={"HX-Request": "true"})
    assert answer.status_code == 200 and answer.headers["hx-redirect"].startswith("/console/signin?next=")


def test_the_pair_matrix_and_the_chart_data() -> None:
    window = {"net_by_pair": [{"payer_admdvs": "640000", "payee_admdvs": "620000", "net_fen": 500},
                              {"payer_admdvs": "350000", "payee_admdvs": "640000", "net_fen": 70}],
              "net_by_province": [{"admdvs": "130000", "net_fen": 0}]}
    matrix = router.pair_matrix(window)
    assert matrix["provinces"] == ["130000", "350000", "620000", "640000"]
    assert matrix["rows"][3] == [None, None, 500, None] and matrix["rows"][1] == [None, None, None, 70]
    assert sorted(map(tuple, matrix["heat"])) == [(2, 3, 500), (3, 1, 70)]
    charts = router.stats_charts([
        {"month": "2026-02", "use": "transfer", "scope": "cross_province", "amount_fen": 100},
        {"month": "2026-03", "use": "transfer", "scope": "cross_province", "amount_fen": 50},
        {"month": "2026-03", "use": "pharmacy", "scope": None, "amount_fen": 7}])
    assert charts["months"] == ["2026-02", "2026-03"]
    assert {s["name"]: s["data"] for s in charts["series"]} == {"药店购药": [0, 7], "转账": [100, 50]}
    assert charts["scopes"] == [{"name": "跨省", "value": 150}, {"name": "钱包使用(不分范围)", "value": 7}]


async def test_an_alert_links_to_its_persons_activity_by_person_number(console: Console) -> None:
    await console.sign_in()
    page = await console.http.get(f"/console/alerts/{console.alert_id}")
    assert 'name="psn_no" value="P640000A"' in page.text and "查看此人的共济活动" in page.text
    csrf = await console.csrf(f"/console/alerts/{console.alert_id}")
    unsigned = await console.http.post("/console/persons", data={"csrf_token": csrf, "psn_no": "P640000A"})
    assert unsigned.status_code == 422 and "审核人" in unsigned.text  # every read of a person names its reviewer
    # The seeded person is in no directory: the activity service's own 404, shown as the not-found page.
    looked = await console.http.post("/console/persons", data={"csrf_token": csrf, "psn_no": "P640000A",
                                                               "reviewer": "张审核"})
    assert looked.status_code == 404 and "参保人" in looked.text
