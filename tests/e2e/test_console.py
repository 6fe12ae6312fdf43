"""The operator console in a real browser (Debian's headless Chromium driven by Playwright) against the real
federation: sign in, the overview, a transfer made here seen in the statistics and in its trace, a window closed
and its net positions, a held transfer released from the alerts page and credited, the audit chains verified;
and no JavaScript error on any page.

Chromium comes from Debian's packages (`chromium`, `fonts-wqy-microhei`, installed by `make install` and
`.ci/run`); Playwright's own browser download is never used (`executable_path`). Without the browser the tests
skip locally and fail under CI (`CI` set), where its absence is a broken machine."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from launcher.client import FederationClient
from services.national_hub.domain import risk_rules
from services.national_hub.entrypoints.console.display import yuan
from shared.clock import SHANGHAI
from tests.conftest import Federation
from tests.e2e.flows import bound_pair, eventually, send, wait_transfer

pytestmark = pytest.mark.federation

CHROMIUM = os.environ.get("YIBAO_CHROMIUM", "/usr/bin/chromium")
PAGES = {"总览": "/console/", "统计": "/console/stats", "清算": "/console/clearing", "风险预警": "/console/alerts",
         "查询": "/console/lookup", "审计": "/console/audit"}


def chromium_present() -> bool:
    return shutil.which(CHROMIUM) is not None


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not chromium_present():
        message = f"{CHROMIUM} missing: apt-get install chromium fonts-wqy-microhei (make install does it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Chromium writes under $HOME even headless: a scratch home, not the user's.
    home = tempfile.mkdtemp(prefix="yibao-chromium-")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"],
                                                    env={**os.environ, "HOME": home})
        try:
            yield launched
        finally:
            await launched.close()
    shutil.rmtree(home, ignore_errors=True)


class Console:
    """One signed-in browser tab, collecting every JavaScript error and failed console message it sees."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = str(message.location.get("url", ""))
        # Chromium logs a page answered 401/403/404/422 as "Failed to load resource": those pages are the
        # console's intended answers (a wrong token, a forged form, an unknown id), not script errors. A
        # script, style or chart file that fails to load is one.
        if message.text.startswith("Failed to load resource") and "/console/static/" not in url:
            return
        self.errors.append(f"console: {message.text} @ {url}")

    def assert_no_javascript_errors(self) -> None:
        assert self.errors == [], self.errors


@pytest.fixture
async def console(browser: Browser, federation: Federation, client: FederationClient) -> AsyncIterator[Console]:
    context = await browser.new_context(base_url=client.hub_url(), locale="zh-CN", timezone_id="Asia/Shanghai")
    tab = Console(await context.new_page())
    await tab.page.goto("/console/")
    await expect(tab.page).to_have_url(re.compile(r"/console/signin\?next="))
    await tab.page.get_by_label("运营令牌").fill(federation.operator_token)
    await tab.page.keyboard.press("Enter")  # keyboard only
    await expect(tab.page.get_by_role("heading", name="总览", exact=True)).to_be_visible()
    try:
        yield tab
        tab.assert_no_javascript_errors()
    finally:
        await context.close()


async def operator_get(client: FederationClient, federation: Federation, path: str) -> Any:
    answer = await client.http.get(f"{client.hub_url()}/v1/ops{path}",
                                   headers={"authorization": f"Bearer {federation.operator_token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_sign_in_refusal_and_every_page_without_javascript_errors(
        browser: Browser, console: Console, client: FederationClient) -> None:
    # A wrong token: the sign-in page again with a message, in another browser.
    context = await browser.new_context(base_url=client.hub_url())
    stranger = Console(await context.new_page())
    await stranger.page.goto("/console/signin")
    await stranger.page.get_by_label("运营令牌").fill("wrong-token")
    await stranger.page.get_by_role("button", name="登录").click()
    await expect(stranger.page.get_by_role("alert")).to_contain_text("令牌不正确")
    stranger.assert_no_javascript_errors()
    await context.close()

    page = console.page
    cookie = next(c for c in await page.context.cookies() if c["name"] == "yibao_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    await expect(page.get_by_role("table", name=re.compile("健康"))).to_contain_text("hub")
    await expect(page.get_by_role("table", name=re.compile("健康"))).to_contain_text("node-640000")
    for label, path in PAGES.items():
        await page.get_by_role("navigation").get_by_role("link", name=label, exact=True).click()
        await expect(page).to_have_url(re.compile(re.escape(path) + r"$"))
        await expect(page.get_by_role("heading", level=1)).to_contain_text(label)
        assert not re.search(r"(?<![0-9a-fA-F])\d{17}[\dX](?![0-9a-fA-F])", await page.content()), path
    # Keyboard only: Tab from the top of the overview reaches the skip link first, then the navigation.
    await page.goto("/console/")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "跳到正文"
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == "统计":
            break
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/console/stats$"))
    await expect(page.locator("#chart-month-use svg")).to_have_count(1)
    # Sign out: the pages want a sign-in again.
    await page.get_by_role("button", name="退出").click()
    await expect(page.get_by_role("heading", name="登录运营监管台")).to_be_visible()
    await page.goto("/console/audit")
    await expect(page).to_have_url(re.compile(r"/console/signin"))


async def test_a_transfer_appears_in_the_statistics_and_in_its_trace(
        console: Console, federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "350100")
    accepted = await send(client, pair, 123_450)
    assert (await wait_transfer(client, pair.giver_session, accepted["transfer_id"]))["state"] == "CREDITED"
    month = datetime.now(SHANGHAI).strftime("%Y-%m")

    async def counted() -> bool:
        rows = (await operator_get(client, federation, f"/stats?from={month}&to={month}"))["rows"]
        return any((r["from_admdvs"], r["to_admdvs"], r["use"]) == ("640000", "350000", "transfer") for r in rows)

    await eventually(counted, "the transfer in the statistics")
    stats = await operator_get(client, federation, f"/stats?from={month}&to={month}")
    row = next(r for r in stats["rows"] if (r["from_admdvs"], r["to_admdvs"], r["use"]) == ("640000", "350000",
                                                                                           "transfer"))
    page = console.page
    await page.goto(f"/console/stats?from={month}&to={month}")
    await page.get_by_label("省份").select_option("350000")
    await page.get_by_role("button", name="查询").click()
    table = page.get_by_role("table", name=re.compile("明细"))
    await expect(table).to_contain_text("福建 350000")
    await expect(table).to_contain_text(yuan(row["amount_fen"]))
    await expect(page.locator("#chart-scope svg")).to_have_count(1)
    async with page.expect_download() as download:
        await page.get_by_role("link", name="下载 CSV").click()
    assert "350000" in (await (await download.value).path()).read_text()

    await page.get_by_role("link", name="查询", exact=True).click()
    await page.get_by_label("转账编号").fill(accepted["transfer_id"])
    await page.get_by_role("button", name="追踪").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(accepted["transfer_id"])
    await expect(page.locator("dl")).to_contain_text("已入账")
    await expect(page.locator("dl")).to_contain_text("¥1,234.50")
    await expect(page.get_by_role("table", name=re.compile("每一跳"))).to_contain_text("CREDITED")

    # A person's activity by ID number; a bad one gets the form again with the message.
    await page.goto("/console/lookup")
    await page.get_by_label("身份证号码").fill("123456789012345678")
    await page.get_by_label("审核人").fill("张审核")
    await page.get_by_role("button", name="查询个人活动").click()
    await expect(page.get_by_role("alert")).to_contain_text("身份证号码格式不正确")
    await page.get_by_label("身份证号码").fill(pair.giver.id_no)
    await page.get_by_role("button", name="查询个人活动").click()
    await expect(page.get_by_role("table", name=re.compile("转账"))).to_contain_text(accepted["transfer_id"])
    assert pair.giver.id_no not in await page.content()


async def test_closing_a_window_shows_its_net_positions(
        console: Console, federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "610100", "640100")
    accepted = await send(client, pair, 66_600)
    assert (await wait_transfer(client, pair.giver_session, accepted["transfer_id"]))["state"] == "CREDITED"
    page = console.page
    await page.goto("/console/clearing")
    await page.get_by_role("link", name="关闭当前结算窗口…").click()
    await page.get_by_role("button", name="确认关闭窗口").click()
    await expect(page.get_by_role("status")).to_contain_text("已关闭结算窗口")
    window = (await operator_get(client, federation, "/settlement-windows"))[-1]
    assert window["sum_fen"] == 0 and window["obligations"] >= 1
    by_province = page.get_by_role("table", name=re.compile("各省净头寸"))
    for position in window["net_by_province"]:
        await expect(by_province).to_contain_text(yuan(position["net_fen"]))
    matrix = page.get_by_role("table", name=re.compile("省际净头寸矩阵"))
    for pair_position in window["net_by_pair"]:
        await expect(matrix).to_contain_text(yuan(pair_position["net_fen"]))
    await expect(page.locator("#chart-matrix svg")).to_have_count(1)


async def test_a_held_transfer_is_released_from_the_alerts_page_and_credited(
        console: Console, federation: Federation, client: FederationClient) -> None:
    headers = {"authorization": f"Bearer {federation.operator_token}"}
    amount_fen = 130_000
    rule_url = f"{client.hub_url()}/v1/ops/risk-rules/NEW_BINDING_LARGE_TRANSFER"
    changed = await client.http.put(rule_url, headers=headers,
                                    json={"action": "hold", "params": {"min_amount_fen": amount_fen}})
    assert changed.status_code == 200, changed.text
    try:
        pair = await bound_pair(client, "640100", "620100")
        accepted = await send(client, pair, amount_fen)
        transfer_id = accepted["transfer_id"]
        await wait_transfer(client, pair.giver_session, transfer_id, states=("HELD",))
    finally:
        default = risk_rules.default_setting("NEW_BINDING_LARGE_TRANSFER")
        back = await client.http.put(rule_url, headers=headers, json={
            "enabled": True, "action": default.action, "params": dict(default.params)})
        assert back.status_code == 200, back.text
    page = console.page
    await page.get_by_role("navigation").get_by_role("link", name="风险预警").click()
    row = page.get_by_role("row").filter(has_text=transfer_id)
    await row.get_by_role("link", name="审核").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("风险预警")
    await page.get_by_role("radio", name=re.compile("^放行")).check()
    await page.get_by_label("审核人", exact=True).fill("张审核")
    await page.get_by_label("备注").fill("亲属关系已核实")
    await page.get_by_role("button", name="提交决定").click()
    await expect(page.get_by_role("status")).to_contain_text("放行")
    assert (await wait_transfer(client, pair.giver_session, transfer_id))["state"] == "CREDITED"
    await page.get_by_role("link", name="转账追踪").click()
    await expect(page.locator("dl")).to_contain_text("已入账")


async def test_the_audit_chains_are_verified_from_the_audit_page(
        console: Console, federation: Federation, client: FederationClient) -> None:
    page = console.page
    await page.get_by_role("navigation").get_by_role("link", name="审计").click()
    heads = page.get_by_role("table", name=re.compile("链头"))
    await expect(heads).to_contain_text("hub")
    await expect(heads).to_contain_text("gateway")
    await page.get_by_role("button", name="校验全部审计链").click()
    verdicts = page.locator("#verdicts table")
    await expect(verdicts).to_contain_text("校验结果")
    answer = await client.http.post(f"{client.hub_url()}/v1/ops/audit:verify",
                                    headers={"authorization": f"Bearer {federation.operator_token}"})
    for verdict in answer.json():
        service_row = verdicts.get_by_role("row").filter(has_text=verdict["service"]).first
        await expect(service_row).to_contain_text("一致" if verdict["ok"] else "异常")
