from datetime import UTC, datetime

import pytest

from services.national_hub.domain.kinship import INVERSE, facts_proving
from services.province_node.domain import ledger, notices
from services.province_node.domain.errors import DomainError
from services.province_node.domain.transfer_rules import QuietHours, TransferPolicy, check_transfer, shanghai_day

POLICY = TransferPolicy(max_per_day=3, max_amount_fen=200_000, quiet_hours=QuietHours.parse("22:00-06:00"))
NOON_SHANGHAI = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai


def test_postings_must_balance() -> None:
    posting = ledger.move("X", "ref", "PA:1", ledger.IN_FLIGHT, 500)
    assert sum(amount for _, amount in posting.legs) == 0
    with pytest.raises(AssertionError):
        ledger.Posting("X", "ref", (("PA:1", -500), ("WALLET:2", 499)))
    with pytest.raises(AssertionError):
        ledger.move("X", "ref", "PA:1", "WALLET:2", 0)


def test_only_system_accounts_may_go_negative() -> None:
    assert ledger.may_go_negative(ledger.FUNDING)
    assert not ledger.may_go_negative(ledger.personal_account("6400001"))
    assert not ledger.may_go_negative(ledger.wallet_account("6400001"))


def refusal(*, amount_fen: int = 50_000, now: datetime = NOON_SHANGHAI, sent_today: int = 0,
            balance_fen: int = 10**7) -> str | None:
    try:
        check_transfer(POLICY, amount_fen=amount_fen, now=now, sent_today=sent_today, balance_fen=balance_fen)
    except DomainError as exc:
        return exc.code
    return None


def test_transfer_limits() -> None:
    assert refusal() is None
    assert refusal(amount_fen=200_000) is None
    assert refusal(amount_fen=200_001) == "TRANSFER_LIMIT_AMOUNT"
    assert refusal(sent_today=3) == "TRANSFER_LIMIT_DAILY"
    assert refusal(balance_fen=49_999) == "INSUFFICIENT_FUNDS"
    # 23:00 and 05:59 in Shanghai are quiet; 06:00 is not.
    assert refusal(now=datetime(2026, 11, 23, 15, 0, tzinfo=UTC)) == "TRANSFER_QUIET_HOURS"
    assert refusal(now=datetime(2026, 11, 22, 21, 59, tzinfo=UTC)) == "TRANSFER_QUIET_HOURS"
    assert refusal(now=datetime(2026, 11, 22, 22, 0, tzinfo=UTC)) is None


def test_quiet_hours_can_be_disabled_and_day_is_shanghai_day() -> None:
    assert QuietHours.parse("") is None
    assert shanghai_day(datetime(2026, 11, 23, 16, 30, tzinfo=UTC)) == "2026-11-24"


def test_notice_wording() -> None:
    assert notices.transfer_received(50_000) == "您的共济账户已收到500元"
    assert notices.transfer_received(12_345) == "您的共济账户已收到123.45元"


def test_kinship_reads_both_ways() -> None:
    assert all(INVERSE[INVERSE[r]] == r for r in INVERSE)
    assert ("m", "d", "child") in facts_proving("d", "m", "parent")
