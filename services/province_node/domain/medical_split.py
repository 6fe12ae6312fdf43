"""How a hospital or clinic bill is settled at the payer's home node (API.md "Medical institutions"). Pure.

The bill is the sum of its fee lines, each already split by the catalogue of the province of treatment (the
gateway's domain/medical_bill.py): fulamt_ownpay_amt + overlmt_amt + preselfpay_amt + inscp_scp_amt = amount.
The pooled fund pays its share of inscp_scp_amt under the home province's policy (medical_policy.fund_share);
the person's share psn_part_amt = medfee_sumamt − fund_pay_sumamt is then paid as at pharmacies: own personal
account (acct_pay), wallet and quotas received (acct_mulaid_pay), the rest cash (psn_cash_pay); daily goods are
always cash, and with acct_used_flag "0" everything is. Identities (asserted, and unit-tested by hand):
  medfee_sumamt = fulamt_ownpay_amt + overlmt_selfpay + preselfpay_amt + inscp_scp_amt
  medfee_sumamt = fund_pay_sumamt + psn_part_amt + hosp_part_amt (hosp_part_amt 0)
  medfee_sumamt = fund_pay_sumamt + acct_pay + acct_mulaid_pay + psn_cash_pay"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from services.province_node.domain.medical_policy import FundShare, PolicyRule, fund_share
from services.province_node.domain.payment_split import Funds, Split, split_payment


@dataclass(frozen=True)
class LineAmounts:
    """One fee line as the catalogue split it (negative for a refund line)."""

    amount_fen: int
    fulamt_fen: int
    overlmt_fen: int
    preselfpay_fen: int
    inscp_fen: int
    daily_goods: bool = False

    def __post_init__(self) -> None:
        assert self.amount_fen == self.fulamt_fen + self.overlmt_fen + self.preselfpay_fen + self.inscp_fen, self


@dataclass(frozen=True)
class BillTotals:
    medfee_fen: int
    fulamt_fen: int
    overlmt_fen: int
    preselfpay_fen: int
    inscp_fen: int
    daily_goods_fen: int  # part of fulamt_fen: never paid from accounts


def bill_totals(lines: Iterable[LineAmounts]) -> BillTotals:
    listed = list(lines)
    totals = BillTotals(
        medfee_fen=sum(line.amount_fen for line in listed), fulamt_fen=sum(line.fulamt_fen for line in listed),
        overlmt_fen=sum(line.overlmt_fen for line in listed),
        preselfpay_fen=sum(line.preselfpay_fen for line in listed),
        inscp_fen=sum(line.inscp_fen for line in listed),
        daily_goods_fen=sum(line.amount_fen for line in listed if line.daily_goods))
    return totals


def is_settleable(totals: BillTotals) -> bool:
    """Refund lines never take a bill (or any part of its split) below zero."""
    return totals.medfee_fen > 0 and min(totals.fulamt_fen, totals.overlmt_fen, totals.preselfpay_fen,
                                         totals.inscp_fen, totals.daily_goods_fen) >= 0


@dataclass(frozen=True)
class MedicalSplit:
    totals: BillTotals
    fund: FundShare
    person: Split  # acct_pay, wallet, quota parts, cash of the person's share

    @property
    def fund_pay_fen(self) -> int:
        return self.fund.hifp_pay_fen

    @property
    def psn_part_fen(self) -> int:
        return self.totals.medfee_fen - self.fund.hifp_pay_fen

    @property
    def cleared_fen(self) -> int:
        """What the payer's province owes the institution's: fund_pay_sumamt + acct_pay + acct_mulaid_pay."""
        return self.fund_pay_fen + self.person.account_pay_fen


def split_medical(totals: BillTotals, rule: PolicyRule, *, deductible_used_fen: int, cap_used_fen: int,
                  ratio_cut: Decimal, funds: Funds, use_accounts: bool) -> MedicalSplit:
    assert is_settleable(totals), totals
    fund = fund_share(totals.inscp_fen, rule, deductible_used_fen=deductible_used_fen, cap_used_fen=cap_used_fen,
                      ratio_cut=ratio_cut)
    psn_part_fen = totals.medfee_fen - fund.hifp_pay_fen
    if psn_part_fen == 0:
        person = Split(0, 0, (), 0)
    else:
        person = split_payment(psn_part_fen, psn_part_fen - totals.daily_goods_fen, funds,
                               use_accounts=use_accounts)
    split = MedicalSplit(totals, fund, person)
    assert totals.medfee_fen == (totals.fulamt_fen + totals.overlmt_fen + totals.preselfpay_fen
                                 + totals.inscp_fen), split
    assert totals.medfee_fen == split.fund_pay_fen + person.acct_pay_fen + person.mulaid_pay_fen \
        + person.cash_pay_fen, split
    assert person.cash_pay_fen >= totals.daily_goods_fen, split
    return split
