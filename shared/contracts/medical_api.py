"""Bodies of the internal medical API (gateway -> the payer's home province node, under /internal/v1/medical,
internal token). Money is integer fen; the gateway converts to and from the yuan of the national wire and has
already split every fee line by the catalogue of the province of treatment. Every call is keyed by the
message's msgid: a repeat gets the stored answer and changes nothing; 2601 reverses by the original msgid.

Each call names the institution (code, region, hosp_lv) as the gateway's registry knows it: the node keeps the
visit's state and checks that later messages come from the same institution and person."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from shared.contracts.internal_api import InternalModel, PosBalances, refuse_self_reversal
from shared.money import MAX_AMOUNT_FEN

Setting = Literal["outpatient", "inpatient"]
# What the node does for each state-changing infno (2206/2303 pre-settles are :preview, moving nothing).
MEDICAL_INFNOS = ("2201", "2202", "2203", "2204", "2205", "2207", "2208", "2301", "2302", "2304", "2305", "2401",
                  "2402", "2404", "2405")
REVERSIBLE_INFNOS = ("2207", "2208", "2304", "2305", "2401")


class MedicalLine(InternalModel):
    feedetl_sn: str = Field(max_length=30)
    init_feedetl_sn: str = Field(default="", max_length=30)
    chrg_bchno: str = Field(default="", max_length=30)
    med_list_codg: str = Field(max_length=50)
    amount_fen: int = Field(ge=-MAX_AMOUNT_FEN, le=MAX_AMOUNT_FEN)
    cnt: str = Field(max_length=24)
    price_fen: int = Field(ge=0, le=MAX_AMOUNT_FEN)
    fulamt_fen: int
    overlmt_fen: int
    preselfpay_fen: int
    inscp_fen: int
    daily_goods: bool = False
    chrgitm_lv: str | None = None
    selfpay_prop: str = "0"


class MedicalCall(InternalModel):
    """POST /internal/v1/medical/messages:apply (every state-changing infno) and :preview (2206/2303)."""

    msgid: str = Field(min_length=30, max_length=30)
    infno: str = Field(pattern=r"^(2[2-4][0-9]{2}|2601)$")
    psn_no: str = Field(max_length=32)
    fixmedins_code: str = Field(max_length=12)
    institution_admdvs: str = Field(pattern=r"^[0-9]{6}$")
    hosp_lv: Literal["1", "2", "3"]
    # 2201 / 2401
    insutype: str | None = Field(default=None, max_length=3)
    med_type: str | None = Field(default=None, max_length=6)
    begntime: datetime | None = None
    ipt_otp_no: str | None = Field(default=None, max_length=30)
    # every later message
    mdtrt_id: str | None = Field(default=None, max_length=40)
    # 2204 / 2301
    lines: list[MedicalLine] = Field(default_factory=list, max_length=500)
    # 2205 (a batch or "0000"), 2206/2207 (a batch)
    chrg_bchno: str | None = Field(default=None, max_length=30)
    # 2302: the lines to drop ("0000" = all)
    feedetl_sns: list[str] = Field(default_factory=list, max_length=500)
    # 2206/2207/2303/2304
    medfee_fen: int | None = Field(default=None, ge=0, le=MAX_AMOUNT_FEN)
    use_accounts: bool = False
    # 2208/2305
    setl_id: str | None = Field(default=None, max_length=40)
    # 2402
    endtime: datetime | None = None
    # 2601
    omsgid: str | None = Field(default=None, min_length=30, max_length=30)
    oinfno: str | None = Field(default=None, max_length=4)
    # As for POS payments: a call reaching the ledger after this is refused unapplied.
    answer_by: datetime | None = None

    @model_validator(mode="after")
    def _not_itself(self) -> MedicalCall:
        refuse_self_reversal(self.msgid, self.omsgid)
        return self


class MedicalVisit(InternalModel):
    mdtrt_id: str
    psn_no: str
    setting: Setting
    state: str  # REGISTERED | ADMITTED | DISCHARGED | SETTLED | CANCELLED
    fixmedins_code: str
    insutype: str
    med_type: str
    ipt_otp_no: str


class MedicalSettlement(InternalModel):
    """A medical settlement as the payer's node holds it; `version` grows with every change of state."""

    setl_id: str
    msgid: str
    mdtrt_id: str
    chrg_bchno: str
    psn_no: str
    fixmedins_code: str
    insutype: str
    setting: Setting
    state: Literal["SETTLED", "CANCELLED", "REVERSED"]
    version: int
    medfee_fen: int
    fulamt_fen: int
    overlmt_fen: int
    preselfpay_fen: int
    inscp_fen: int
    act_pay_dedc_fen: int
    hifp_pay_fen: int
    ratio: str
    acct_pay_fen: int
    wallet_pay_fen: int
    quota_pay_fen: int
    cash_pay_fen: int
    settled_at: datetime

    @property
    def mulaid_pay_fen(self) -> int:
        return self.wallet_pay_fen + self.quota_pay_fen

    @property
    def cleared_fen(self) -> int:
        """fund_pay_sumamt + acct_pay + acct_mulaid_pay: what the institution's province is owed."""
        return self.hifp_pay_fen + self.acct_pay_fen + self.mulaid_pay_fen


class MedicalResult(InternalModel):
    """What every call answers. `effect` is what this call moved (CHARGE, REFUND or NONE); `settlement` is the
    settlement it made, cancelled, previewed (setl_id "") or reversed; `lines` the lines it stored (2204/2301)."""

    effect: Literal["CHARGE", "REFUND", "NONE"] = "NONE"
    visit: MedicalVisit | None = None
    settlement: MedicalSettlement | None = None
    lines: list[MedicalLine] = Field(default_factory=list)
    undone: bool = False  # 2601: whether the original had done something that is now undone
    balances_after: PosBalances | None = None
