"""The pharmacy gateway in process over a fake payer's node: the gateway's real app (routes, authentication,
parsing, its own migrated SQLite database and message log), with the hub's directory and the province nodes'
POS API replaced by `FakeDirectory` and `FakeNode`, which hold one province's people and their personal
accounts in memory and record every call. For what the gateway decides alone (x-tif authentication, the
envelope and bill checks): no Kafka, no federation. Tills are launcher.pos_client.PosClient over ASGI."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI

from launcher.people import Person
from launcher.pos_client import DEMO_CATALOGUE, PosClient
from services.pharmacy_gateway.adapters.federation_http import DirectoryClient, InternalHttp, ProvinceNodes
from services.pharmacy_gateway.bootstrap import MIGRATIONS as GATEWAY_MIGRATIONS
from services.pharmacy_gateway.bootstrap import bootstrap as gateway_bootstrap
from services.pharmacy_gateway.config import GatewaySettings
from services.pharmacy_gateway.service_layer.context import GatewayContext, Registry
from shared.clock import SystemClock
from shared.contracts.internal_api import (
    DirectoryLookup,
    DirectoryLookupResult,
    PosBalances,
    PosCancelRequest,
    PosPayment,
    PosPaymentRequest,
    PosPaymentResult,
    PosPerson,
    PosPersonQuery,
    PosReverseRequest,
    PosSplitPreview,
)
from shared.db import drop_schemas, open_database
from shared.ids import card_hash, id_hash
from tests.support.inprocess import SECRETS

GATEWAY_URL = "http://gateway.in-process"
PROVINCE = "640000"  # the fake node's province: every person it holds is insured there


@dataclass
class Account:
    """One insured person at the fake node: an employee with a personal account, no wallet, no quota."""

    person: Person
    psn_no: str
    personal_account_fen: int

    def view(self) -> PosPerson:
        id_no = self.person.id_no
        return PosPerson(psn_no=self.psn_no, name=self.person.name, gend="1" if int(id_no[16]) % 2 else "2",
                         brdy=date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14])),
                         certno_masked=id_no[:4] + "*" * 10 + id_no[-4:], insutype=self.person.insutype,
                         insuplc_admdvs=PROVINCE, pooling_admdvs=self.person.pooling_admdvs, insured=True,
                         personal_account_fen=self.personal_account_fen, wallet_fen=None, quota_fen=0)

    def balances(self) -> PosBalances:
        return PosBalances(personal_account_fen=self.personal_account_fen, wallet_fen=None, quota_fen=0)


@dataclass
class FakeNode:
    """What the payer's home node would hold and answer; `calls` is every call the gateway made, in order, as
    (method, psn_no or msgid)."""

    accounts: dict[str, Account] = field(default_factory=dict)  # by psn_no
    settled: dict[str, PosPaymentResult] = field(default_factory=dict)  # by msgid
    calls: list[tuple[str, str]] = field(default_factory=list)

    def account(self, psn_no: str) -> Account:
        return self.accounts[psn_no]

    def split(self, request: PosPaymentRequest, account: Account) -> tuple[int, int]:
        acct_fen = min(request.eligible_fen if request.use_accounts else 0, account.personal_account_fen)
        return acct_fen, request.medfee_fen - acct_fen

    def settle(self, request: PosPaymentRequest) -> PosPaymentResult:
        known = self.settled.get(request.msgid)
        if known is not None:
            return known.model_copy(update={"effect": "NONE"})
        account = self.account(request.psn_no)
        acct_fen, cash_fen = self.split(request, account)
        account.personal_account_fen -= acct_fen
        number = len(self.settled) + 1
        payment = PosPayment(setl_id=f"{PROVINCE}{number:024d}", mdtrt_id=f"MD{PROVINCE}{number:012d}",
                             msgid=request.msgid, psn_no=request.psn_no, fixmedins_code=request.fixmedins_code,
                             insutype=request.insutype, state="SETTLED", version=1, medfee_fen=request.medfee_fen,
                             eligible_fen=request.eligible_fen, acct_pay_fen=acct_fen, wallet_pay_fen=0,
                             quota_pay_fen=0, cash_pay_fen=cash_fen, settled_at=datetime.now(UTC))
        result = PosPaymentResult(effect="CHARGE", payment=payment, balances_after=account.balances())
        self.settled[request.msgid] = result
        return result

    def preview(self, request: PosPaymentRequest) -> PosSplitPreview:
        account = self.account(request.psn_no)
        acct_fen, cash_fen = self.split(request, account)
        after = account.balances().model_copy(update={"personal_account_fen": account.personal_account_fen - acct_fen})
        return PosSplitPreview(psn_no=request.psn_no, mdtrt_id=f"MD{PROVINCE}{0:012d}", medfee_fen=request.medfee_fen,
                               eligible_fen=request.eligible_fen, acct_pay_fen=acct_fen, wallet_pay_fen=0,
                               quota_pay_fen=0, cash_pay_fen=cash_fen, balances_after=after)


class FakeNodes(ProvinceNodes):
    """The gateway's client of the province nodes, answered by one FakeNode (any other province: an error that
    surfaces as a failed message, which no test here expects)."""

    def __init__(self, node: FakeNode) -> None:
        super().__init__(lambda admdvs: f"http://node-{admdvs}.fake", "unused", 1.0, 1)
        self.node = node

    def _of(self, admdvs: str, method: str, key: str) -> FakeNode:
        assert admdvs == PROVINCE, f"the gateway asked province {admdvs}, which no fake node holds"
        self.node.calls.append((method, key))
        return self.node

    async def person(self, admdvs: str, query: PosPersonQuery) -> PosPerson | None:
        node = self._of(admdvs, "person", str(query.psn_no))
        account = node.accounts.get(str(query.psn_no))
        return account.view() if account is not None else None

    async def preview(self, admdvs: str, request: PosPaymentRequest) -> PosSplitPreview:
        return self._of(admdvs, "preview", request.msgid).preview(request)

    async def settle(self, admdvs: str, request: PosPaymentRequest) -> PosPaymentResult:
        return self._of(admdvs, "settle", request.msgid).settle(request)

    async def cancel(self, admdvs: str, request: PosCancelRequest) -> PosPaymentResult:
        self._of(admdvs, "cancel", request.msgid)
        raise AssertionError("the fake node does not cancel")

    async def reverse(self, admdvs: str, request: PosReverseRequest) -> PosPaymentResult:
        self._of(admdvs, "reverse", request.msgid)
        raise AssertionError("the fake node does not reverse")


class FakeDirectory(DirectoryClient):
    """The hub's directory: the fake node's people by keyed ID-number and card hashes."""

    def __init__(self) -> None:
        super().__init__(InternalHttp("http://hub.fake", "unused", 1.0, 1), 0.0)
        self.entries: dict[str, DirectoryLookupResult] = {}

    async def lookup(self, query: DirectoryLookup) -> DirectoryLookupResult | None:
        return self.entries.get(query.id_hash or query.card_hash or "")


@dataclass
class InProcessGateway:
    ctx: GatewayContext
    app: FastAPI
    http: httpx.AsyncClient  # to the gateway's app, over ASGI
    node: FakeNode
    directory: FakeDirectory

    def enrol(self, person: Person, *, card_no: str | None = None) -> Account:
        """The person insured at the fake node (with their personal account) and known to the directory."""
        key = self.ctx.settings.id_hash_key_bytes
        account = Account(person, f"{PROVINCE}{len(self.node.accounts) + 1:010d}", person.personal_account_fen)
        self.node.accounts[account.psn_no] = account
        found = DirectoryLookupResult(psn_no=account.psn_no, insuplc_admdvs=PROVINCE, insured=True)
        self.directory.entries[id_hash(key, person.id_no)] = found
        if card_no is not None:
            self.directory.entries[card_hash(key, card_no)] = found
        return account

    def operator_headers(self, *, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.ctx.settings.operator_token}"}
        return headers | ({"idempotency-key": idempotency_key} if idempotency_key else {})

    async def register(self, fixmedins_code: str, name: str, admdvs: str, **profile: str) -> httpx.Response:
        """POST /v1/admin/institutions with a new Idempotency-Key (`profile`: kind, hosp_lv); the answer as it came."""
        return await self.http.post("/v1/admin/institutions", json={
            "fixmedins_code": fixmedins_code, "fixmedins_name": name, "admdvs": admdvs, **profile},
            headers=self.operator_headers(idempotency_key=uuid.uuid4().hex))

    async def till(self, fixmedins_code: str, name: str, admdvs: str, *, sign_in: bool = True) -> PosClient:
        """A pharmacy registered through the admin API, signed in (9001) unless told otherwise."""
        registered = await self.register(fixmedins_code, name, admdvs)
        assert registered.status_code == 201, registered.text
        till = PosClient.registered(GATEWAY_URL, registered.json(), http=self.http)
        if sign_in:
            await till.sign_in()
        return till


@contextlib.asynccontextmanager
async def in_process_gateway(home: Path, database_url: str = "") -> AsyncIterator[InProcessGateway]:
    """The gateway's real app on its own migrated database, the demo catalogue imported, over a fake node: a
    SQLite file under `home`, or a schema of its own in `database_url`'s PostgreSQL database, dropped afterwards.
    Its clock is the system's: tills sign x-tif headers with the wall clock."""
    settings = GatewaySettings(home=home, **(SECRETS | {"database_url": database_url}),
                               db_schema_prefix=f"g{secrets.token_hex(3)}_")
    db = await open_database(settings, "gateway", GATEWAY_MIGRATIONS)
    node, directory = FakeNode(), FakeDirectory()
    nodes = FakeNodes(node)
    clock = SystemClock()
    registry = Registry()
    await registry.load(db)
    ctx = GatewayContext(settings=settings, db=db, clock=clock, directory=directory, nodes=nodes, registry=registry)
    # The app's lifespan (Kafka, periodic jobs) never runs under ASGITransport; the context it would build is
    # given here.
    app = gateway_bootstrap(settings, clock)
    app.state.ctx = ctx
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY_URL)
    try:
        gateway = InProcessGateway(ctx=ctx, app=app, http=http, node=node, directory=directory)
        imported = await http.post("/v1/admin/catalogue:import", json={"items": DEMO_CATALOGUE},
                                   headers=gateway.operator_headers(idempotency_key=uuid.uuid4().hex))
        assert imported.status_code == 200, imported.text
        yield gateway
    finally:
        await http.aclose()
        await nodes.close()
        await directory.close()
        await db.dispose()
        if database_url:
            await drop_schemas(database_url, [f"{settings.db_schema_prefix}gateway"])
