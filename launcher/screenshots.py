"""`yibao screenshots`: PNGs of every operator-console page of the running federation, for the README.

Signs in with the home's operator token, walks the pages in Debian's headless Chromium (Playwright with
`executable_path`: its own browser download is not used) and writes docs/screenshots/<page>.png. Run it after
`yibao up` and `yibao demo`, so the pages show the seed stories' money. Playwright is a development dependency
(`make install` installs it): imported only when the command runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from launcher.client import FederationClient
from launcher.state import StatePaths, home_dir

DEFAULT_OUT = Path("docs/screenshots")
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 860}


async def _first_transfer_id(http: httpx.AsyncClient, hub: str, headers: dict[str, str]) -> str | None:
    """A transfer to show the trace of: one an alert names (the demo's held or large transfers)."""
    alerts = (await http.get(f"{hub}/v1/ops/alerts", headers=headers)).json()
    for alert in reversed(alerts if isinstance(alerts, list) else []):
        found = alert.get("held_transfer_id") or (alert.get("detail") or {}).get("transfer_id")
        if found:
            return str(found)
    return None


async def take(out: Path, chromium: str, token: str, close_window: bool) -> list[Path]:
    from playwright.async_api import async_playwright  # a development dependency: only when the command runs

    hub = FederationClient.hub_url()
    headers = {"authorization": f"Bearer {token}"}
    written: list[Path] = []
    async with httpx.AsyncClient(timeout=30) as http:
        if close_window:
            closed = await http.post(f"{hub}/v1/ops/settlement-windows/current:close",
                                     headers={**headers, "idempotency-key": uuid.uuid4().hex})
            closed.raise_for_status()
        alerts = (await http.get(f"{hub}/v1/ops/alerts", headers=headers)).json()
        transfer_id = await _first_transfer_id(http, hub, headers)
    home = tempfile.mkdtemp(prefix="yibao-chromium-")
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"],
                                                       env={**os.environ, "HOME": home})
            context = await browser.new_context(base_url=hub, viewport=VIEWPORT,  # type: ignore[arg-type]
                                                locale="zh-CN", timezone_id="Asia/Shanghai")
            page = await context.new_page()

            async def shot(name: str) -> None:
                await page.wait_for_load_state("networkidle")
                path = out / f"{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                written.append(path)

            await page.goto("/console/signin")
            await shot("00-signin")
            await page.get_by_label("运营令牌").fill(token)
            await page.get_by_role("button", name="登录").click()
            await page.wait_for_url("**/console/")
            await shot("01-overview")
            await page.goto("/console/stats")
            await shot("02-stats")
            await page.goto("/console/clearing")
            await shot("03-clearing")
            await page.goto("/console/alerts?state=all")
            await shot("04-alerts")
            if alerts:
                await page.goto(f"/console/alerts/{alerts[-1]['alert_id']}")
                await shot("05-alert")
            await page.goto("/console/lookup")
            await shot("06-lookup")
            if transfer_id:
                await page.goto(f"/console/transfers/{transfer_id}")
                await shot("07-trace")
            await page.goto("/console/audit")
            await page.get_by_role("button", name="校验全部审计链").click()
            await page.locator("#verdicts table").wait_for()
            await shot("08-audit")
            await browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return written


def command(
    out: Annotated[Path, typer.Option(help="Where the PNGs go.")] = DEFAULT_OUT,
    chromium: Annotated[str, typer.Option(help="The Chromium binary (Debian's package).")] = CHROMIUM,
    close_window: Annotated[bool, typer.Option(
        "--close-window", help="Close the current settlement window first, so 清算 shows net positions.")] = False,
) -> None:
    """PNG screenshots of each operator-console page of the running federation (docs/screenshots/)."""
    if shutil.which(chromium) is None:
        typer.echo(f"{chromium} not found: apt-get install chromium fonts-wqy-microhei", err=True)
        raise typer.Exit(2)
    try:
        token = StatePaths(home_dir()).operator_token_file.read_text().strip()
        out.mkdir(parents=True, exist_ok=True)
        written: list[Any] = asyncio.run(take(out, chromium, token, close_window))
    except (OSError, httpx.HTTPError) as exc:
        typer.echo(f"screenshots failed (is the federation up? `yibao up`): {exc}", err=True)
        raise typer.Exit(1) from None
    for path in written:
        typer.echo(str(path))
