"""`yibao pos ...`: a pharmacy till against the running federation's gateway, signing every message with the
x-tif-* headers exactly as pharmacy software does (launcher/pos_client.py).

    yibao pos register [--code P51010000001 --name 成都康泰大药房 --admdvs 510100]
    yibao pos sign-in
    yibao pos lookup --cert-type 02 --cert-no 640202196504120016
    yibao pos buy --cert-type 02 --cert-no 640202196504120016 --item XC08CAA001A001:2:28.50 [--item ...]
    yibao pos cancel --setl-id ... --mdtrt-id ... --psn-no ...
    yibao pos reverse --omsgid ... --oinfno 2102 --psn-no ...
    yibao pos reconcile [--from 2025-01-01 --to 2025-01-31]
    yibao pos load --rate 100 --duration 10

Hospital mode (a HIS on the 22xx-24xx messages, API.md "Medical institutions"):

    yibao pos register --kind hospital --hosp-lv 3 --code H13010000001 --name 河北省儿童医院 --admdvs 130100
    yibao pos visit --cert-type 03 --cert-no J12345678 --fee 001101000010000:1:20.00 --fee 002201000010000:1:25
    yibao pos admit --cert-type 02 --cert-no 130102201809050012 --fee 001103000010000:7:60.00 [--fee ...]
    yibao pos cancel-visit --setl-id ... --mdtrt-id ... --psn-no ...     (2208)
    yibao pos cancel-stay --setl-id ... --mdtrt-id ... --psn-no ...      (2305)
    yibao pos reverse --omsgid ... --oinfno 2207 --psn-no ...

`visit` runs 1101, 2201, 2203, 2204, 2206, 2207 as a HIS does; `admit` runs 1101, 2401, 2301, 2402, 2303,
2304. A hospital registered here gets the demo medical catalogue (launcher/pos_client.py HOSPITAL_CATALOGUE).

An institution registered here (operator token) keeps its paas_id, paas_token and last sign_no in
<YIBAO_HOME>/pos/<code>.json; commands use the last one registered unless --code names another. A till that
was never registered is registered (with the demo catalogue) on first use."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from launcher import bench_pos, supervisor
from launcher.client import FederationClient
from launcher.pos_client import (
    DEMO_CATALOGUE,
    HEBEI_CATALOGUE,
    HOSPITAL_CATALOGUE,
    Fee,
    HisClient,
    Item,
    PosClient,
    PosFailed,
    import_medical_catalogue,
    ok,
    register_medical_institution,
    total,
)
from launcher.state import LaunchError, home_dir, resolve_operator_token
from shared.clock import SHANGHAI

DEFAULT_CODE, DEFAULT_NAME, DEFAULT_ADMDVS = "P51010000001", "成都康泰大药房", "510100"
DEFAULT_HOSPITAL_CODE, DEFAULT_HOSPITAL_NAME, DEFAULT_HOSPITAL_ADMDVS = "H62010000001", "兰州市第二人民医院", "620100"
_out = Console()
_err = Console(stderr=True)


def _tills_dir() -> Path:
    return home_dir() / "pos"


def _saved_path(code: str) -> Path:
    return _tills_dir() / f"{code}.json"


def _save(state: dict[str, Any]) -> None:
    _tills_dir().mkdir(parents=True, exist_ok=True)
    path = _saved_path(state["fixmedins_code"])
    path.write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)  # the paas_token is a secret
    (_tills_dir() / "current").write_text(state["fixmedins_code"] + "\n", encoding="utf-8")


def _current_code() -> str | None:
    pointer = _tills_dir() / "current"
    return pointer.read_text(encoding="utf-8").strip() if pointer.exists() else None


async def _register(client: FederationClient, code: str, name: str, admdvs: str, kind: str = "pharmacy",
                    hosp_lv: str = "1") -> dict[str, Any]:
    await client.import_catalogue(DEMO_CATALOGUE)
    if kind == "pharmacy":
        registration = await client.register_institution(code, name, admdvs)
    else:
        await import_medical_catalogue(client.http, client.gateway_url(), client.operator_token, HOSPITAL_CATALOGUE)
        await import_medical_catalogue(client.http, client.gateway_url(), client.operator_token, HEBEI_CATALOGUE,
                                       admdvs="130000")
        registration = await register_medical_institution(client.http, client.gateway_url(), client.operator_token,
                                                          code, name, admdvs, kind=kind, hosp_lv=hosp_lv)
    state = {**registration, "gateway_url": client.gateway_url(), "sign_no": ""}
    _save(state)
    return state


async def _till(client: FederationClient, code: str | None) -> HisClient:
    code = code or _current_code() or DEFAULT_CODE
    path = _saved_path(code)
    if path.exists():
        state = json.loads(path.read_text(encoding="utf-8"))
    elif code == DEFAULT_CODE:
        _err.print(f"registering the demo pharmacy {DEFAULT_CODE} {DEFAULT_NAME} ({DEFAULT_ADMDVS}) first")
        state = await _register(client, DEFAULT_CODE, DEFAULT_NAME, DEFAULT_ADMDVS)
    else:
        raise LaunchError(f"institution {code} is not registered here: run `yibao pos register --code {code}`")
    till = HisClient.registered(state["gateway_url"], state)
    till.sign_no = state.get("sign_no", "")
    return till


async def _signed_in(client: FederationClient, code: str | None) -> HisClient:
    till = await _till(client, code)
    if not till.sign_no:
        await _sign_in(till)
    return till


async def _sign_in(till: PosClient) -> None:
    await till.sign_in()
    state = json.loads(_saved_path(till.fixmedins_code).read_text(encoding="utf-8"))
    _save(state | {"sign_no": till.sign_no})


def _item(text: str) -> Item:
    """CODE:CNT:PRICE, e.g. XC08CAA001A001:2:28.50."""
    try:
        code, cnt, price = text.split(":")
        count = Decimal(cnt)
        Decimal(price)
    except (ValueError, InvalidOperation) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: an item is CODE:CNT:PRICE, e.g. XC08CAA001A001:2:28.50") \
            from exc
    return Item(code, int(count) if count == count.to_integral_value() else count, price)


def _show(title: str, response: dict[str, Any]) -> None:
    colour = "green" if response.get("infcode") == 0 else "red"
    _out.print(f"[bold]{title}[/bold] infcode [{colour}]{response.get('infcode')}[/{colour}] "
               f"{response.get('err_msg') or ''}  ({response.get('inf_refmsgid')})", highlight=False)
    if response.get("output"):
        _out.print_json(json.dumps(response["output"], ensure_ascii=False))


def _split_table(info: dict[str, Any]) -> Table:
    table = Table(title=f"settlement {info.get('setl_id', '(pre-settle)')}")
    for column in ("medfee", "eligible", "self-pay items", "acct_pay", "acct_mulaid_pay", "psn_cash_pay",
                   "balc after"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{info[key]:.2f}" for key in ("medfee_sumamt", "inscp_scp_amt", "fulamt_ownpay_amt",
                                                   "acct_pay", "acct_mulaid_pay", "psn_cash_pay", "balc")))
    return table


# ------------------------------------------------------------------------------------------------ commands


async def cmd_register(client: FederationClient, args: argparse.Namespace) -> int:
    if args.kind != "pharmacy" and args.code == DEFAULT_CODE:
        args.code, args.name, args.admdvs = DEFAULT_HOSPITAL_CODE, DEFAULT_HOSPITAL_NAME, DEFAULT_HOSPITAL_ADMDVS
    state = await _register(client, args.code, args.name, args.admdvs, args.kind, args.hosp_lv)
    _out.print(f"registered {state['fixmedins_code']} {state['fixmedins_name']} ({state['admdvs']}): "
               f"paas_id {state['paas_id']}; credentials in {_saved_path(args.code)}", highlight=False)
    return 0


async def cmd_sign_in(client: FederationClient, args: argparse.Namespace) -> int:
    till = await _till(client, args.code)
    try:
        await _sign_in(till)
    finally:
        await till.aclose()
    _out.print(f"{till.fixmedins_code} signed in: sign_no {till.sign_no}", highlight=False)
    return 0


async def cmd_lookup(client: FederationClient, args: argparse.Namespace) -> int:
    till = await _signed_in(client, args.code)
    try:
        response = await till.person(args.cert_type, args.cert_no)
    finally:
        await till.aclose()
    _show("1101 person", response)
    return 0 if response["infcode"] == 0 else 1


async def cmd_buy(client: FederationClient, args: argparse.Namespace) -> int:
    """What a till does at the counter: look the person up, pre-settle, then settle the same basket."""
    till = await _signed_in(client, args.code)
    try:
        payer = await till.payer(args.cert_type, args.cert_no)
        pre = await till.presettle(payer, args.item, acct_used=not args.cash)
        if pre["infcode"] != 0:
            _show("2101 pre-settle", pre)
            return 1
        _out.print(_split_table(pre["output"]["setlinfo"]))
        paid = await till.settle(payer, args.item, acct_used=not args.cash)
    finally:
        await till.aclose()
    if paid["infcode"] != 0:
        _show("2102 settle", paid)
        return 1
    info = paid["output"]["setlinfo"]
    _out.print(_split_table(info))
    _out.print(f"setl_id {info['setl_id']}  mdtrt_id {info['mdtrt_id']}  psn_no {info['psn_no']}", highlight=False)
    return 0


def _fee(text: str) -> Fee:
    """CODE:CNT:PRICE, e.g. 001101000010000:1:20.00."""
    item = _item(text)
    return Fee(item.med_list_codg, item.cnt, item.pric_yuan)


def _medical_table(info: dict[str, Any]) -> Table:
    table = Table(title=f"settlement {info.get('setl_id', '(pre-settle)')}")
    columns = (("medfee", "medfee_sumamt"), ("full self-pay", "fulamt_ownpay_amt"),
               ("over ceiling", "overlmt_selfpay"), ("first self-pay", "preselfpay_amt"),
               ("inscp", "inscp_scp_amt"), ("deductible", "act_pay_dedc"), ("fund", "fund_pay_sumamt"),
               ("acct_pay", "acct_pay"), ("acct_mulaid_pay", "acct_mulaid_pay"), ("cash", "psn_cash_pay"),
               ("balc after", "balc"))
    for title, _ in columns:
        table.add_column(title, justify="right")
    table.add_row(*(f"{info[key]:.2f}" for _, key in columns))
    return table


async def _hospital(client: FederationClient, code: str | None) -> HisClient:
    """The institution to send 22xx-24xx from: the one named, else the demo hospital (registered on first use)."""
    code = code or DEFAULT_HOSPITAL_CODE
    if not _saved_path(code).exists() and code == DEFAULT_HOSPITAL_CODE:
        _err.print(f"registering the demo hospital {code} {DEFAULT_HOSPITAL_NAME} ({DEFAULT_HOSPITAL_ADMDVS}, "
                   "level 2) first")
        await _register(client, code, DEFAULT_HOSPITAL_NAME, DEFAULT_HOSPITAL_ADMDVS, "hospital", "2")
    return await _signed_in(client, code)


def _step(title: str, response: dict[str, Any]) -> dict[str, Any]:
    if response.get("infcode") != 0:
        _show(title, response)
        raise PosFailed(response)
    _out.print(f"[green]✓[/green] {title}", highlight=False)
    return ok(response)


async def cmd_visit(client: FederationClient, args: argparse.Namespace) -> int:
    """An outpatient visit as a HIS runs it: 1101, 2201, 2203, 2204, 2206, 2207."""
    his = await _hospital(client, args.code)
    try:
        payer = await his.payer(args.cert_type, args.cert_no)
        mdtrt_id = _step("2201 register", await his.register(payer))["data"]["mdtrt_id"]
        _step("2203 visit info", await his.visit_info(mdtrt_id, payer.psn_no, med_type=args.med_type))
        lines = _step("2204 fee lines", await his.upload(mdtrt_id, payer.psn_no, args.batch, args.fee))
        _out.print_json(json.dumps(lines["result"], ensure_ascii=False))
        medfee = total(args.fee)
        pre = _step("2206 pre-settle", await his.presettle_visit(payer, mdtrt_id, args.batch, medfee,
                                                                 acct_used=not args.cash))
        _out.print(_medical_table(pre["setlinfo"]))
        paid = _step("2207 settle", await his.settle_visit(payer, mdtrt_id, args.batch, medfee,
                                                           acct_used=not args.cash))
    finally:
        await his.aclose()
    info = paid["setlinfo"]
    _out.print(_medical_table(info))
    _out.print(f"setl_id {info['setl_id']}  mdtrt_id {info['mdtrt_id']}  psn_no {info['psn_no']}", highlight=False)
    return 0


async def cmd_admit(client: FederationClient, args: argparse.Namespace) -> int:
    """An inpatient stay as a HIS runs it: 1101, 2401, 2301, 2402, 2303, 2304."""
    his = await _hospital(client, args.code)
    try:
        payer = await his.payer(args.cert_type, args.cert_no)
        mdtrt_id = _step("2401 admit", await his.admit(payer, diag_name=args.diagnosis))["result"]["mdtrt_id"]
        lines = _step("2301 fee lines", await his.upload_stay(mdtrt_id, payer.psn_no, args.fee))
        _out.print_json(json.dumps(lines["result"], ensure_ascii=False))
        _step("2402 discharge", await his.discharge(mdtrt_id, payer.psn_no, payer.insutype))
        medfee = total(args.fee)
        pre = _step("2303 pre-settle", await his.presettle_stay(payer, mdtrt_id, medfee, acct_used=not args.cash))
        _out.print(_medical_table(pre["setlinfo"]))
        paid = _step("2304 settle", await his.settle_stay(payer, mdtrt_id, medfee, acct_used=not args.cash))
    finally:
        await his.aclose()
    info = paid["setlinfo"]
    _out.print(_medical_table(info))
    _out.print(f"setl_id {info['setl_id']}  mdtrt_id {info['mdtrt_id']}  psn_no {info['psn_no']}", highlight=False)
    return 0


async def cmd_cancel_visit(client: FederationClient, args: argparse.Namespace) -> int:
    return await _one_message(client, args.code or DEFAULT_HOSPITAL_CODE, "2208 cancel settlement",
                              lambda his: his.cancel_visit_settlement(args.setl_id, args.mdtrt_id, args.psn_no))


async def cmd_cancel_stay(client: FederationClient, args: argparse.Namespace) -> int:
    return await _one_message(client, args.code or DEFAULT_HOSPITAL_CODE, "2305 cancel settlement",
                              lambda his: his.cancel_stay_settlement(args.setl_id, args.mdtrt_id, args.psn_no))


async def _one_message(client: FederationClient, code: str, title: str,
                       send: Callable[[HisClient], Awaitable[dict[str, Any]]]) -> int:
    """Sign in as the institution, send one message, show the answer; exit 1 on infcode -1."""
    till = await _signed_in(client, code)
    try:
        response = await send(till)
    finally:
        await till.aclose()
    _show(title, response)
    return 0 if response["infcode"] == 0 else 1


async def cmd_cancel(client: FederationClient, args: argparse.Namespace) -> int:
    return await _one_message(client, args.code, "2103 cancel",
                              lambda till: till.cancel(args.setl_id, args.mdtrt_id, args.psn_no))


async def cmd_reverse(client: FederationClient, args: argparse.Namespace) -> int:
    return await _one_message(client, args.code, "2601 reversal",
                              lambda till: till.reverse(args.omsgid, args.oinfno, args.psn_no))


async def cmd_reconcile(client: FederationClient, args: argparse.Namespace) -> int:
    return await _one_message(client, args.code, "3201 reconciliation",
                              lambda till: till.reconcile(args.first_day, args.last_day))


async def cmd_load(client: FederationClient, args: argparse.Namespace) -> int:
    provinces = supervisor.running_provinces(home_dir())
    if not provinces:
        raise LaunchError("no federation is running: run `yibao up` first")
    till, payers, _ = await bench_pos.prepare_till(client, client.gateway_url(), provinces, args.payers, _err)
    try:
        async with bench_pos.LeanTill(till, bench_pos.MAX_IN_FLIGHT) as lean:
            result = await bench_pos.run_load(lean, payers, args.rate, args.duration, _err)
    finally:
        await till.aclose()
    _out.print(f"[bold]load[/bold]: 2102 at {args.rate:g}/s for {args.duration:g} s, {len(payers)} payers")
    bench_pos.print_load(_out, result.summary())
    return 0 if not result.refusals else 1


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date yyyy-mm-dd") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yibao pos", description="A pharmacy till on the national interface.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Callable[[FederationClient, argparse.Namespace], Awaitable[int]],
                help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--code", help="fixmedins_code of a registered institution (default: the last one)")
        sub.set_defaults(run=run)
        return sub

    register = command("register", cmd_register, "Register an institution (operator token) and the demo catalogue.")
    register.set_defaults(code=DEFAULT_CODE)
    register.add_argument("--name", default=DEFAULT_NAME)
    register.add_argument("--admdvs", default=DEFAULT_ADMDVS, help="the institution's region, e.g. 510100")
    register.add_argument("--kind", default="pharmacy", choices=("pharmacy", "hospital", "clinic"))
    register.add_argument("--hosp-lv", default="1", choices=("1", "2", "3"), help="hospital level")
    command("sign-in", cmd_sign_in, "9001: sign in; the sign_no goes into every later message.")
    for name, run, text in (("lookup", cmd_lookup, "1101: who is paying, and what they hold."),
                            ("buy", cmd_buy, "1101, 2101 pre-settle, then 2102 settle of a basket.")):
        sub = command(name, run, text)
        sub.add_argument("--cert-type", required=True, choices=("01", "02", "03"),
                         help="01 医保码 token, 02 resident ID, 03 social-security card")
        sub.add_argument("--cert-no", required=True)
        if name == "buy":
            sub.add_argument("--item", required=True, action="append", type=_item,
                             help="CODE:CNT:PRICE (yuan), repeatable")
            sub.add_argument("--cash", action="store_true", help="acct_used_flag 0: pay everything in cash")
    cancel = command("cancel", cmd_cancel, "2103: cancel a settlement; each part goes back where it came from.")
    for option in ("--setl-id", "--mdtrt-id", "--psn-no"):
        cancel.add_argument(option, required=True)
    for name, run, text in (("cancel-visit", cmd_cancel_visit, "2208: cancel an outpatient settlement."),
                            ("cancel-stay", cmd_cancel_stay, "2305: cancel an inpatient settlement.")):
        sub = command(name, run, text)
        for option in ("--setl-id", "--mdtrt-id", "--psn-no"):
            sub.add_argument(option, required=True)
    for name, run, text in (("visit", cmd_visit, "Hospital mode: 1101, 2201, 2203, 2204, 2206, 2207."),
                            ("admit", cmd_admit, "Hospital mode: 1101, 2401, 2301, 2402, 2303, 2304.")):
        sub = command(name, run, text)
        sub.add_argument("--cert-type", required=True, choices=("01", "02", "03"),
                         help="01 医保码 token, 02 resident ID, 03 social-security card")
        sub.add_argument("--cert-no", required=True)
        sub.add_argument("--fee", required=True, action="append", type=_fee,
                         help="CODE:CNT:PRICE (yuan), repeatable")
        sub.add_argument("--cash", action="store_true", help="acct_used_flag 0: the person's share in cash")
        if name == "visit":
            sub.add_argument("--batch", default="B1", help="chrg_bchno of the fee lines")
            sub.add_argument("--med-type", default="11", choices=("11", "14"))
        else:
            sub.add_argument("--diagnosis", default="肺炎")
    reverse = command("reverse", cmd_reverse, "2601: reverse a 2102, 2103 (pharmacy) or 2207, 2208, 2304, 2305, "
                                              "2401 (hospital) by its msgid.")
    reverse.add_argument("--omsgid", required=True)
    reverse.add_argument("--oinfno", required=True, choices=("2102", "2103", "2207", "2208", "2304", "2305", "2401"))
    reverse.add_argument("--psn-no", required=True)
    reconcile = command("reconcile", cmd_reconcile, "3201: this institution's totals for a date range.")
    today = datetime.now(SHANGHAI).date()
    reconcile.add_argument("--from", dest="first_day", type=_day, default=today)
    reconcile.add_argument("--to", dest="last_day", type=_day, default=today)
    load = command("load", cmd_load, "Settles (2102) at a steady rate; prints latency percentiles.")
    load.add_argument("--rate", type=float, default=50.0, help="settles per second")
    load.add_argument("--duration", type=float, default=10.0, help="seconds")
    load.add_argument("--payers", type=int, default=10, help="payers per province")
    return parser


def main(args: list[str]) -> int:
    parsed = _parser().parse_args(args)

    async def run() -> int:
        client = FederationClient(resolve_operator_token(home_dir()), timeout_s=30)
        try:
            code: int = await parsed.run(client, parsed)
            return code
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except (LaunchError, PosFailed) as exc:
        _err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    except (OSError, httpx.HTTPError) as exc:
        _err.print(f"[bold red]error:[/] the federation did not answer ({exc}); is it up (`yibao up`)?",
                   highlight=False)
        return 1
