"""The SMS-style notices' texts (the wording citizens know from the 医保钱包)."""

from __future__ import annotations

from shared.money import yuan_text


def transfer_received(amount_fen: int) -> str:
    return f"您的共济账户已收到{yuan_text(amount_fen)}元"


def transfer_refunded(amount_fen: int, reason: str | None) -> str:
    return f"您的共济转账{yuan_text(amount_fen)}元已退回个人账户（{reason or '未到账'}）"


def binding_changed(relative_name_masked: str, state: str) -> str:
    words = {"PENDING_CONSENT": "已发起，等待亲属确认", "ACTIVE": "已生效", "ENDED": "已解除"}
    return f"您与{relative_name_masked}的共济绑定{words.get(state, state)}"
