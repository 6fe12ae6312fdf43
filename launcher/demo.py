"""`yibao demo`: the seed stories on the running federation, narrated with balances before and after.

1. 王芳, working in Yinchuan, binds her parents in Lanzhou by name and ID; they confirm by face; 500 yuan from
   her personal account reaches her mother's wallet, with the notice.
2. 王德顺 of Shizuishan, living in Chengdu, pays for blood-pressure drugs at a Chengdu pharmacy from his
   Ningxia account, by 医保码 after a face check.
3. 李金山 of Guyuan, who has no smartphone, sees a doctor at his community hospital (an outpatient visit: 2201
   → 2204 → 2206 → 2207 by social-security card); Ningxia's fund pays its share and the wallet his son in
   Xi'an filled pays his.
4. 陈志强 in Xiamen sets a 10,000-yuan yearly quota for his mother in Lanzhou, pays her resident premium from
   it, and her 200-yuan purchase is paid from it too, while a packet of tissues in the basket goes to cash;
   her quarterly check-up at a Lanzhou hospital is paid from it as well.
5. 李建军, an employee in Deyang (Sichuan), pays the personal share of his daughter's pneumonia
   hospitalisation at a Shijiazhuang children's hospital (level 3) from the quota he set for her; she is a
   resident insured in Hebei, whose fund pays its share under Hebei's policy.

The people get fresh ID numbers every run (same names), so the demo can be run again on the same federation."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from launcher import supervisor
from launcher.client import FederationClient, Session, face_image_b64
from launcher.pos_client import (
    DEMO_CATALOGUE,
    HEBEI_CATALOGUE,
    HOSPITAL_CATALOGUE,
    Fee,
    HisClient,
    Item,
    Payer,
    PosClient,
    import_medical_catalogue,
    ok,
    register_medical_institution,
    total,
)
from launcher.state import LaunchError, home_dir, resolve_operator_token
from shared.clock import SHANGHAI
from shared.ids import make_id_no, mask_id_no
from shared.money import yuan_text

DRUG_BP = "XC08CAA001A001"  # 苯磺酸氨氯地平片, blood pressure
DRUG_COUGH = "XR05CAA001A001"  # 复方甘草口服溶液
DRUG_FEVER = "XN02BEA001A001"  # 对乙酰氨基酚片
TISSUES = "RY0000000001"  # 面巾纸: daily goods, cash only
# Hospital catalogue (launcher/pos_client.py HOSPITAL_CATALOGUE): 甲类 01, 乙类 02 (first self-pay), 丙类 03.
CONSULT = "001101000010000"  # 普通门诊诊查费, 甲类
BLOOD = "002201000010000"  # 血常规, 甲类
CRP = "002202000020000"  # C反应蛋白测定, 乙类 10 %
CHEST_DR = "002101000010000"  # 胸部X线摄影, 乙类 10 %, a ceiling per film
BED = "001103000010000"  # 住院床位费, 甲类, a ceiling per day
WARD_ROUND = "001201000010000"  # 住院诊查费, 甲类
CEFTRIAXONE = "XJ01DDA201B002"  # 注射用头孢曲松钠, 乙类 5 %
AZITHROMYCIN = "XJ01FAA091B001"  # 注射用阿奇霉素, 甲类
AMBROXOL = "XR05CBA023X001"  # 盐酸氨溴索口服溶液, 乙类
SALINE = "XB05BBS001B001"  # 氯化钠注射液, 甲类
NEBULISER_MASK = "ZZ0000000301"  # 进口雾化面罩, 丙类: full self-pay
WARD_KIT = "RY0000000101"  # 住院生活用品包: daily goods, cash only
HBA1C = "002301000030000"  # 糖化血红蛋白测定, 乙类 10 %
METFORMIN = "XA10BAA001A001"  # 盐酸二甲双胍片, 甲类

console = Console()


# A federation started with the default policy refuses transfers at night (API.md: YIBAO_TRANSFER_QUIET_HOURS);
# the stories move money between relatives, so the demo says how to run them now instead of a bare refusal.
QUIET_HOURS_CODE = "TRANSFER_QUIET_HOURS"
QUIET_HOURS_HELP = ("this federation refuses transfers in its quiet hours (by default 22:00-06:00 Asia/Shanghai), "
                    "and the stories move money between relatives. To tell them now, restart it without quiet hours, "
                    "as `make demo` does: `yibao down`, then `YIBAO_TRANSFER_QUIET_HOURS= yibao up --fresh` (with the "
                    "same YIBAO_DATABASE_URL, --replicas and --kafka-brokers), then `yibao demo`")


class Demo:
    def __init__(self, client: FederationClient) -> None:
        self.client = client
        self.seq = random.randrange(1000)
        self.people: dict[str, dict[str, Any]] = {}

    def person(self, key: str, name: str, pooling: str, birth: str, *, employee: bool, pa_yuan: int = 0,
               card_no: str | None = None) -> dict[str, Any]:
        self.seq = (self.seq + 1) % 1000
        id_no = make_id_no(f"{pooling}{birth}{self.seq:03d}")
        body: dict[str, Any] = {"id_no": id_no, "name": name, "phone": f"139{random.randrange(10**8):08d}",
                                "insutype": "310" if employee else "390", "pooling_admdvs": pooling,
                                "personal_account_fen": pa_yuan * 100, "face_image_b64": face_image_b64(id_no)}
        if card_no:
            body["card_no"] = card_no
        self.people[key] = body
        return body

    async def enrol(self) -> None:
        by_province: dict[str, list[dict[str, Any]]] = {}
        for body in self.people.values():
            by_province.setdefault(body["pooling_admdvs"][:2] + "0000", []).append(body)
        for admdvs, bodies in by_province.items():
            result = await self.client.import_persons(admdvs, bodies)
            if result["rejected"]:
                raise LaunchError(f"demo people refused by {admdvs}: {result['rejected']}")

    async def face(self, key: str) -> Session:
        body = self.people[key]
        return await self.client.login(body["id_no"], body["name"], face_label=body["id_no"])

    async def call(self, session: Session, method: str, path: str, json: Any = None) -> Any:
        response = await self.client.call_keyed(session, method, path, json)
        if response.status_code >= 400:
            if QUIET_HOURS_CODE in response.text:
                raise LaunchError(QUIET_HOURS_HELP + f" (the node said: {response.text})")
            raise LaunchError(f"{method} {path} refused: {response.text}")
        return response.json()

    async def bind(self, giver: str, relative: str, relation: str) -> tuple[Session, Session, str]:
        g, r = self.people[giver], self.people[relative]
        await self.client.import_kinship([{"id_no_a": g["id_no"], "id_no_b": r["id_no"], "relation": relation}])
        giver_session, relative_session = await self.face(giver), await self.face(relative)
        created = await self.call(giver_session, "POST", "/v1/bindings", {
            "relative_id_no": r["id_no"], "relative_name": r["name"], "relation": relation})
        say(f"  {g['name']} binds {r['name']} ({mask_id_no(r['id_no'])}) as {relation}: {created['state']}")
        confirmed = await self.call(relative_session, "POST", f"/v1/bindings/{created['binding_id']}:confirm")
        say(f"  {r['name']} confirms by face: {confirmed['state']}")
        await self.until_binding_active(giver_session, created["binding_id"])
        return giver_session, relative_session, str(created["binding_id"])

    async def until_binding_active(self, session: Session, binding_id: str) -> None:
        for _ in range(200):
            listed = await self.call(session, "GET", "/v1/bindings")
            if any(b["binding_id"] == binding_id and b["state"] == "ACTIVE" for b in listed):
                return
            await asyncio.sleep(0.05)
        raise LaunchError("the binding never became active at the giver's node")

    async def transfer(self, giver: Session, binding_id: str, amount_fen: int) -> Any:
        accepted = await self.call(giver, "POST", "/v1/transfers", {"binding_id": binding_id,
                                                                    "amount_fen": amount_fen})
        for _ in range(400):
            state = await self.call(giver, "GET", f"/v1/transfers/{accepted['transfer_id']}")
            if state["state"] in ("CREDITED", "REFUNDED"):
                return state
            await asyncio.sleep(0.025)
        raise LaunchError(f"transfer {accepted['transfer_id']} did not finish")

    async def balances(self, session: Session) -> str:
        mine = await self.call(session, "GET", "/v1/me")
        parts = []
        if mine["personal_account_fen"] is not None:
            parts.append(f"personal account {yuan(mine['personal_account_fen'])}")
        parts.append(f"wallet {yuan(mine['wallet']['balance_fen'])}" if mine["wallet"] else "no wallet")
        for quota in mine["quotas_received"]:
            parts.append(f"quota {yuan(quota['annual_quota_fen'] - quota['used_fen'])} left of "
                         f"{yuan(quota['annual_quota_fen'])}")
        return ", ".join(parts)

    async def his(self, code: str, name: str, admdvs: str, kind: str, hosp_lv: str) -> HisClient:
        registration = await register_medical_institution(self.client.http, self.client.gateway_url(),
                                                          self.client.operator_token, code, name, admdvs, kind=kind,
                                                          hosp_lv=hosp_lv)
        his = HisClient.registered(self.client.gateway_url(), registration)
        await his.sign_in()
        return his

    async def till(self, code: str, name: str, admdvs: str) -> PosClient:
        registration = await self.client.register_institution(code, name, admdvs)
        till = PosClient.registered(self.client.gateway_url(), registration)
        await till.sign_in()
        return till


def yuan(amount_fen: int) -> str:
    return f"{yuan_text(amount_fen)}元"


def wire_yuan(amount: Any) -> str:
    """A yuan number from the NHSA wire, shown as people read it."""
    return f"{Decimal(str(amount)):.2f}元"


def say(text: str) -> None:
    console.print(text)


def story(title: str) -> None:
    console.print()
    console.print(Panel(title, style="bold cyan", expand=False))


async def pay(till: PosClient, cert_type: str, cert_no: str, items: list[Item]) -> dict[str, Any]:
    payer = await till.payer(cert_type, cert_no)
    pre = ok(await till.presettle(payer, items))["setlinfo"]
    say(f"  pre-settle (nothing moves): total {wire_yuan(pre['medfee_sumamt'])}, account "
        f"{wire_yuan(pre['acct_pay'])}, mutual aid {wire_yuan(pre['acct_mulaid_pay'])}, "
        f"cash {wire_yuan(pre['psn_cash_pay'])}")
    paid: dict[str, Any] = ok(await till.settle(payer, items))["setlinfo"]
    say(f"  settled {paid['setl_id']}: account {wire_yuan(paid['acct_pay'])}, mutual aid "
        f"{wire_yuan(paid['acct_mulaid_pay'])}, cash {wire_yuan(paid['psn_cash_pay'])}")
    return paid


def settlement_line(info: dict[str, Any]) -> str:
    return (f"total {wire_yuan(info['medfee_sumamt'])} = fund {wire_yuan(info['fund_pay_sumamt'])} + own account "
            f"{wire_yuan(info['acct_pay'])} + mutual aid {wire_yuan(info['acct_mulaid_pay'])} + cash "
            f"{wire_yuan(info['psn_cash_pay'])}")


def check_identities(info: dict[str, Any]) -> None:
    """The national platform's identities (reviews/hospital.md §4.3), on what the gateway answered."""
    amounts = {key: Decimal(str(info[key])) for key in (
        "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
        "fund_pay_sumamt", "psn_part_amt", "acct_pay", "acct_mulaid_pay", "psn_cash_pay", "hosp_part_amt")}
    if amounts["medfee_sumamt"] != amounts["fulamt_ownpay_amt"] + amounts["overlmt_selfpay"] + \
            amounts["preselfpay_amt"] + amounts["inscp_scp_amt"] or amounts["medfee_sumamt"] != \
            amounts["fund_pay_sumamt"] + amounts["psn_part_amt"] + amounts["hosp_part_amt"] or \
            amounts["psn_part_amt"] != amounts["acct_pay"] + amounts["acct_mulaid_pay"] + amounts["psn_cash_pay"]:
        raise LaunchError(f"a settlement whose parts do not add up: {info}")


async def outpatient_visit(his: HisClient, payer: Payer, fees: list[Fee], *, diagnosis: str,
                           diag_code: str, with_visit_info: bool = True) -> dict[str, Any]:
    """2201 → (2203) → 2204 → 2206 → 2207 as a HIS does, narrated."""
    registered = ok(await his.register(payer))["data"]
    mdtrt_id = registered["mdtrt_id"]
    say(f"  2201 registered: mdtrt_id {mdtrt_id} (issued by the home province {mdtrt_id[:6]})")
    if with_visit_info:
        ok(await his.visit_info(mdtrt_id, payer.psn_no, diag_name=diagnosis, diag_code=diag_code))
        say(f"  2203 visit info: {diagnosis} ({diag_code})")
    lines = ok(await his.upload(mdtrt_id, payer.psn_no, "B1", fees))["result"]
    say(f"  2204 {len(lines)} fee lines: inscp {wire_yuan(sum(Decimal(str(line['inscp_scp_amt'])) for line in lines))}"
        f", first self-pay {wire_yuan(sum(Decimal(str(line['preselfpay_amt'])) for line in lines))}, full self-pay "
        f"{wire_yuan(sum(Decimal(str(line['fulamt_ownpay_amt'])) for line in lines))}")
    pre = ok(await his.presettle_visit(payer, mdtrt_id, "B1", total(fees)))["setlinfo"]
    say(f"  2206 pre-settle (nothing moves): {settlement_line(pre)}")
    paid: dict[str, Any] = ok(await his.settle_visit(payer, mdtrt_id, "B1", total(fees)))["setlinfo"]
    check_identities(paid)
    say(f"  2207 settled {paid['setl_id']}: deductible {wire_yuan(paid['act_pay_dedc'])}, ratio "
        f"{paid['pool_prop_selfpay']:.2f}; {settlement_line(paid)}")
    return paid


async def _run() -> None:
    home = home_dir()
    provinces = supervisor.running_provinces(home) or []
    needed = {"640000", "620000", "610000", "350000", "510000", "130000"}
    if not needed <= set(provinces):
        raise LaunchError(f"the demo needs provinces {sorted(needed)} running: run `yibao up` first")
    client = FederationClient(resolve_operator_token(home))
    demo = Demo(client)
    tills: list[PosClient] = []
    try:
        await client.import_catalogue(DEMO_CATALOGUE)
        await import_medical_catalogue(client.http, client.gateway_url(), client.operator_token, HOSPITAL_CATALOGUE)
        await import_medical_catalogue(client.http, client.gateway_url(), client.operator_token, HEBEI_CATALOGUE,
                                       admdvs="130000")
        demo.person("fang", "王芳", "640100", "19930517", employee=True, pa_yuan=8_000)
        demo.person("father", "王建国", "620100", "19620308", employee=False)
        demo.person("mother", "李秀英", "620100", "19640921", employee=False)
        demo.person("wang", "王德顺", "640200", "19570214", employee=True, pa_yuan=3_000)
        li_card = f"J{random.randrange(10**8):08d}"
        demo.person("li", "李金山", "640400", "19490630", employee=False, card_no=li_card)
        demo.person("li_son", "李强", "610100", "19780419", employee=True, pa_yuan=6_000)
        demo.person("chen", "陈志强", "350200", "19800101", employee=True, pa_yuan=30_000)
        demo.person("chen_mother", "张桂兰", "620100", "19520812", employee=False)
        demo.person("jianjun", "李建军", "510600", "19850312", employee=True, pa_yuan=20_000)
        demo.person("daughter", "李雨桐", "130100", "20180905", employee=False)
        await demo.enrol()
        suffix = f"{random.randrange(10**6):06d}"
        chengdu = await demo.till(f"P510100{suffix[:5]}", "成都康泰大药房", "510100")
        guyuan = await demo.his(f"H640400{suffix[1:]}"[:12], "固原市原州区社区卫生服务中心", "640400", "hospital", "1")
        lanzhou_hospital = await demo.his(f"H620100{suffix[1:]}"[:12], "兰州市第二人民医院", "620100", "hospital", "2")
        children = await demo.his(f"H130100{suffix[1:]}"[:12], "河北省儿童医院", "130100", "hospital", "3")
        lanzhou = await demo.till(f"P620100{suffix[:5]}", "兰州众友健康大药房", "620100")
        tills += [chengdu, guyuan, lanzhou, lanzhou_hospital, children]

        story("1. 王芳 in Yinchuan sends 500 yuan to her mother in Lanzhou")
        fang, mother, mother_binding = await demo.bind("fang", "mother", "parent")
        await demo.bind("fang", "father", "parent")
        await demo.call(mother, "POST", "/v1/wallet:open")
        say(f"  before: 王芳 {await demo.balances(fang)}; 李秀英 {await demo.balances(mother)}")
        done = await demo.transfer(fang, mother_binding, 50_000)
        say(f"  transfer {done['transfer_id']}: {done['state']} ({done['accepted_at']} → {done.get('credited_at')})")
        say(f"  after: 王芳 {await demo.balances(fang)}; 李秀英 {await demo.balances(mother)}")
        notices = await demo.call(mother, "GET", "/v1/notifications")
        say(f"  📱 李秀英's phone: [bold]{notices[-1]['text']}[/bold]")

        story("2. 王德顺 of Shizuishan pays at a Chengdu pharmacy from his Ningxia account, by 医保码")
        wang = await demo.face("wang")
        say(f"  face check passed; before: {await demo.balances(wang)}")
        code = await demo.call(wang, "POST", "/v1/me/ec-token")
        await pay(chengdu, "01", code["ec_token"], [Item(DRUG_BP, 2, "28.50")])
        say(f"  after: {await demo.balances(wang)} (money moved in Ningxia; Ningxia owes Sichuan)")

        story("3. 李金山 of Guyuan sees a doctor at his community hospital and pays by social-security card, "
              "from the wallet his son in Xi'an filled")
        son, li, li_binding = await demo.bind("li_son", "li", "parent")
        await demo.call(li, "POST", "/v1/wallet:open")
        done = await demo.transfer(son, li_binding, 100_000)
        say(f"  李强 sends 1000 yuan: {done['state']}; 李金山 {await demo.balances(li)}")
        li_payer = await guyuan.payer("03", li_card)
        say(f"  1101 by card: {li_payer.psn_no}, resident (390) insured in {li_payer.insuplc_admdvs}")
        # Ningxia, resident outpatient at a level-1 hospital: no deductible, the fund pays 50 %.
        paid = await outpatient_visit(guyuan, li_payer, [Fee(CONSULT, 1, "10.00"), Fee(AMBROXOL, 1, "18.00"),
                                                         Fee(BLOOD, 1, "25.00")],
                                      diagnosis="急性支气管炎", diag_code="J20.900", with_visit_info=False)
        say(f"  his share {wire_yuan(paid['psn_part_amt'])} came from the wallet; after: 李金山 "
            f"{await demo.balances(li)}")

        story("4. 陈志强 in Xiamen grants his mother in Lanzhou a 10,000-yuan yearly quota")
        chen, chen_mother, chen_binding = await demo.bind("chen", "chen_mother", "parent")
        say(f"  before: 陈志强 {await demo.balances(chen)}")
        quota = await demo.call(chen, "PUT", f"/v1/bindings/{chen_binding}/quota", {"annual_quota_fen": 1_000_000})
        say(f"  quota {yuan(quota['annual_quota_fen'])} for {quota['year']}: reserved {yuan(quota['reserved_fen'])}; "
            f"陈志强 {await demo.balances(chen)}")
        for _ in range(200):
            if (await demo.call(chen_mother, "GET", "/v1/me"))["quotas_received"]:
                break
            await asyncio.sleep(0.05)
        year = datetime.now(SHANGHAI).year
        premium = await demo.call(chen, "POST", "/v1/premiums", {
            "beneficiary_id_no": demo.people["chen_mother"]["id_no"], "year": year, "amount_fen": 40_000,
            "payer": "quota", "binding_id": chen_binding})
        say(f"  he pays her {year} resident premium, {yuan(premium['amount_fen'])}, from the quota: {premium['state']}")
        say(f"  张桂兰 before shopping: {await demo.balances(chen_mother)}")
        paid = await pay(lanzhou, "02", demo.people["chen_mother"]["id_no"],
                         [Item(DRUG_BP, 4, "28.50"), Item(DRUG_COUGH, 4, "21.50"), Item(TISSUES, 1, "3.50")])
        assert Decimal(str(paid["acct_mulaid_pay"])) == Decimal("200.00")
        left = await demo.balances(chen_mother)
        say(f"  the tissues ({wire_yuan(paid['psn_cash_pay'])}) went to cash; 张桂兰 {left}")
        notices = await demo.call(chen_mother, "GET", "/v1/notifications")
        for notice in notices:
            say(f"  📱 张桂兰's phone: {notice['text']}")
        say("  her quarterly diabetes check-up at 兰州市第二人民医院 (level 2), paid from the same quota:")
        mother_payer = await lanzhou_hospital.payer("02", demo.people["chen_mother"]["id_no"])
        # Gansu, resident outpatient at level 2: no deductible, the fund pays 60 % (cap 130 yuan a year).
        await outpatient_visit(lanzhou_hospital, mother_payer, [
            Fee(CONSULT, 1, "20.00"), Fee(HBA1C, 1, "60.00"), Fee(BLOOD, 1, "25.00"), Fee(METFORMIN, 2, "15.00")],
            diagnosis="2型糖尿病", diag_code="E11.900")
        say(f"  after the check-up: 张桂兰 {await demo.balances(chen_mother)}")

        story("5. 李建军 in Deyang pays his daughter's pneumonia stay at a Shijiazhuang children's hospital "
              "from the quota he set for her")
        jianjun, daughter, daughter_binding = await demo.bind("jianjun", "daughter", "child")
        quota = await demo.call(jianjun, "PUT", f"/v1/bindings/{daughter_binding}/quota",
                                {"annual_quota_fen": 500_000})
        say(f"  he sets a {yuan(quota['annual_quota_fen'])} quota for her: 李建军 {await demo.balances(jianjun)}")
        for _ in range(200):
            if (await demo.call(daughter, "GET", "/v1/me"))["quotas_received"]:
                break
            await asyncio.sleep(0.05)
        say(f"  before: 李雨桐 {await demo.balances(daughter)}")
        child = await children.payer("02", demo.people["daughter"]["id_no"])
        admitted = ok(await children.admit(child, diag_name="社区获得性肺炎", diag_code="J18.900",
                                           dept_name="儿童呼吸科"))["result"]
        mdtrt_id = admitted["mdtrt_id"]
        say(f"  2401 admitted to 河北省儿童医院 (level 3): mdtrt_id {mdtrt_id}")
        stay = [Fee(BED, 7, "60.00"), Fee(WARD_ROUND, 7, "20.00"), Fee(CEFTRIAXONE, 14, "35.00"),
                Fee(AZITHROMYCIN, 7, "48.50"), Fee(SALINE, 14, "8.50"), Fee(AMBROXOL, 2, "20.00"),
                Fee(CHEST_DR, 2, "120.00"), Fee(CRP, 3, "50.00"), Fee(BLOOD, 3, "25.00"),
                Fee(NEBULISER_MASK, 1, "30.00"), Fee(WARD_KIT, 1, "25.00")]
        lines = ok(await children.upload_stay(mdtrt_id, child.psn_no, stay))["result"]
        say(f"  2301 {len(lines)} fee lines over 7 days, split by Hebei's catalogue: over the price ceilings "
            f"{wire_yuan(sum(Decimal(str(line['overlmt_amt'])) for line in lines))}, first self-pay "
            f"{wire_yuan(sum(Decimal(str(line['preselfpay_amt'])) for line in lines))}")
        ok(await children.discharge(mdtrt_id, child.psn_no, child.insutype))
        say("  2402 discharged")
        pre = ok(await children.presettle_stay(child, mdtrt_id, total(stay)))["setlinfo"]
        say(f"  2303 pre-settle (nothing moves): {settlement_line(pre)}")
        paid = ok(await children.settle_stay(child, mdtrt_id, total(stay)))["setlinfo"]
        check_identities(paid)
        say(f"  2304 settled {paid['setl_id']}: Hebei's fund (resident, level 3: deductible "
            f"{wire_yuan(paid['act_pay_dedc'])} per admission, ratio {paid['pool_prop_selfpay']:.2f}) pays "
            f"{wire_yuan(paid['fund_pay_sumamt'])}; her share {wire_yuan(paid['psn_part_amt'])}: "
            f"{wire_yuan(paid['acct_mulaid_pay'])} from her father's quota, {wire_yuan(paid['psn_cash_pay'])} cash "
            "(the ward kit: daily goods)")
        say(f"  after: 李雨桐 {await demo.balances(daughter)}; 李建军 {await demo.balances(jianjun)} "
            "(his reserve settles with Hebei through clearing)")
        await print_statistics(client)
        console.print()
        say("[green]All five stories ran on the real federation.[/green] Operator view: "
            "GET /v1/ops/transfers/{id}/trace on the hub; `yibao status` for the services.")
    finally:
        for till in tills:
            await till.aclose()
        await client.aclose()


KIND_ZH = {"transfer": "共济转账", "quota_use": "共济额度使用", "wallet_use": "钱包资金使用"}
USE_ZH = {"transfer": "转账", "pharmacy": "药店购药", "outpatient": "门诊", "inpatient": "住院", "premium": "缴纳保费"}
SCOPE_ZH = {"same_pool": "统筹区内", "in_province": "省内跨统筹区", "cross_province": "跨省", None: "—"}


async def print_statistics(client: FederationClient) -> None:
    """The operators' national statistics for this month (GET /v1/ops/stats), as NHSA publishes them:
    person-times and amounts by kind, use, province pair and scope, in-province use included."""
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    response = await client.http.get(f"{client.hub_url()}/v1/ops/stats", params={"from": month, "to": month},
                                     headers={"authorization": f"Bearer {client.operator_token}"})
    response.raise_for_status()
    stats = response.json()
    story(f"Operator view: national mutual-aid statistics for {month} (GET /v1/ops/stats)")
    table = Table("类别 kind", "用途 use", "from → to", "范围 scope", "人次", "金额 (元)")
    for row in stats["rows"]:
        table.add_row(KIND_ZH.get(row["kind"], row["kind"]), USE_ZH.get(row["use"], row["use"]),
                      f"{row['from_admdvs']} → {row['to_admdvs']}", SCOPE_ZH.get(row["scope"], row["scope"]),
                      str(row["person_times"]), yuan_text(row["amount_fen"]))
    table.add_row("合计 total", "", "", "", str(stats["person_times"]), yuan_text(stats["amount_fen"]),
                  style="bold")
    console.print(table)


def run_demo() -> int:
    try:
        asyncio.run(_run())
    except LaunchError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    return 0
