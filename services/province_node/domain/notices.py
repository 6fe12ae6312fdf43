"""The SMS-style notices' texts (the wording citizens know from the 医保钱包)."""

from __future__ import annotations

from datetime import datetime

from shared.clock import SHANGHAI
from shared.money import yuan_text


def transfer_received(amount_fen: int) -> str:
    return f"您的共济账户已收到{yuan_text(amount_fen)}元"


# Why a transfer came back, in the notice's words; a code not listed here is shown as it is.
_REFUND_BECAUSE = {"TIMEOUT": "超时未到账", "EXPIRED": "超时未到账", "BINDING_ENDED": "共济绑定已解除",
                   "BINDING_NOT_ACTIVE": "共济绑定已解除", "NOT_ACCEPTED": "对方未确认接收",
                   "WALLET_NOT_OPEN": "对方未开通医保钱包", "RECEIVER_NOT_INSURED": "对方参保关系已终止",
                   "RISK_REJECTED": "经医保基金监管审核未通过"}


def transfer_refunded(amount_fen: int, reason: str | None) -> str:
    why = _REFUND_BECAUSE.get(reason or "", reason or "未到账")
    return f"您的共济转账{yuan_text(amount_fen)}元已退回个人账户（{why}）"


def transfer_awaiting_acceptance(amount_fen: int, accept_by: datetime) -> str:
    """To a receiver who must accept: what arrived and until when (Asia/Shanghai wall clock)."""
    local = accept_by.astimezone(SHANGHAI)
    return (f"您的亲属向您转账{yuan_text(amount_fen)}元，请于{local.month}月{local.day}日{local:%H:%M}前"
            "在医保钱包确认接收，逾期将退回")


# Why a binding ended, as the notice says it (UNBOUND, by either party, needs no explanation).
_ENDED_BECAUSE = {"INSURANCE_ENDED": "（参保关系终止）", "MOVED_REGION": "（参保地变更）"}


def binding_changed(relative_name_masked: str, state: str, ended_reason: str | None = None) -> str:
    """To the giver, on every change of a binding."""
    words = {"PENDING_CONSENT": "已发起，等待亲属确认", "ACTIVE": "已生效", "ENDED": "已解除"}
    return f"您与{relative_name_masked}的共济绑定{words.get(state, state)}{_ENDED_BECAUSE.get(ended_reason or '', '')}"


def binding_changed_for_relative(state: str, ended_reason: str | None = None) -> str | None:
    """To the relative: asked to confirm when a giver binds them, told when the binding ends. None when there is
    nothing to tell (ACTIVE: the relative confirmed it themself a moment ago)."""
    if state == "PENDING_CONSENT":
        return "您的亲属申请与您绑定医保钱包共济，请登录医保钱包刷脸确认"
    if state == "ENDED":
        return f"您与亲属的医保钱包共济绑定已解除{_ENDED_BECAUSE.get(ended_reason or '', '')}"
    return None


def binding_request_with_sms_code(code: str) -> str:
    """To a relative asked to confirm a binding (issue 13): the app's face confirmation, or for a relative
    without a smartphone a reply by SMS; the code is in this notice only."""
    return f"您的亲属申请与您绑定医保钱包共济，请登录医保钱包刷脸确认，或回复“确认 {code}”即可完成绑定"


def sms_codes_voided() -> str:
    """To a relative whose phone sent 5 wrong codes: the codes no longer work; the app or a counter still do."""
    return "您回复的确认码错误次数过多，确认码已失效，请登录医保钱包刷脸确认或到医保经办窗口办理"


def quota_granted(annual_quota_fen: int, year: int) -> str:
    return f"您的亲属为您设置了{year}年共济额度{yuan_text(annual_quota_fen)}元"


def premium_paid(amount_fen: int, year: int) -> str:
    return f"您的{year}年城乡居民医保费{yuan_text(amount_fen)}元已缴纳"


def transfer_held_for_review() -> str:
    """To a giver whose transfer a risk rule holds (issue 12): it waits for a reviewer, the money stays held."""
    return "您的共济转账正在接受医保基金安全审核，审核通过后到账，未通过将退回个人账户"
