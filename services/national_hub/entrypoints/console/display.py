"""How the console shows things: money in yuan from integer fen (¥1,234.50), times in Asia/Shanghai, names and
ID numbers masked, codes as Chinese labels. Pure functions, used as Jinja filters."""

from __future__ import annotations

import re
from datetime import datetime

from shared.clock import SHANGHAI
from shared.ids import mask_id_no, mask_name

# Province names by admdvs code (GB/T 2260), as operators read them.
PROVINCES = {
    "110000": "北京", "120000": "天津", "130000": "河北", "140000": "山西", "150000": "内蒙古", "210000": "辽宁",
    "220000": "吉林", "230000": "黑龙江", "310000": "上海", "320000": "江苏", "330000": "浙江", "340000": "安徽",
    "350000": "福建", "360000": "江西", "370000": "山东", "410000": "河南", "420000": "湖北", "430000": "湖南",
    "440000": "广东", "450000": "广西", "460000": "海南", "500000": "重庆", "510000": "四川", "520000": "贵州",
    "530000": "云南", "540000": "西藏", "610000": "陕西", "620000": "甘肃", "630000": "青海", "640000": "宁夏",
    "650000": "新疆",
}

LABELS = {
    # statistics
    "transfer": "转账", "quota_use": "额度使用", "wallet_use": "钱包使用", "pharmacy": "药店购药",
    "outpatient": "门诊", "inpatient": "住院", "premium": "代缴保费", "same_pool": "同统筹区",
    "in_province": "省内跨统筹区", "cross_province": "跨省", "none": "钱包使用(不分范围)",
    # transfer and alert states
    "ROUTED": "在途", "HELD": "风险审查中", "CANCEL_REQUESTED": "撤销中", "CREDITED": "已入账", "REFUNDED": "已退回",
    "open": "待处理", "resolved": "已处理", "dismiss": "无异常(驳回预警)", "release": "放行", "reject": "拒绝并退回",
    "sent": "转出", "received": "转入", "ACTIVE": "生效", "PENDING": "待确认", "ENDED": "已解除",
    # rules
    "HIGH_FREQUENCY_TRANSFERS": "短时间内高频转账", "NEW_BINDING_LARGE_TRANSFER": "新绑定即大额转账",
    "MANY_GIVERS_ONE_RELATIVE": "多人绑定同一亲属", "LARGE_REMOTE_PAYMENT": "大额异地支付",
    "INSTITUTION_CLUSTER": "聚集性购药", "SPLIT_PURCHASES": "分解购药", "DISTANT_PAYMENTS": "异地冒用嫌疑",
    "RAPID_TRANSFERS": "短时间内高频转账", "NEW_BINDING_DRAIN": "新绑定即大额转账",
}

_ID_NO = re.compile(r"\b\d{17}[\dXx]\b")


def yuan(fen: int | None) -> str:
    """¥1,234.50 from 123450 fen; -¥12.00 for a negative amount. Integer arithmetic only (no float)."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def shanghai_time(value: str | datetime | None) -> str:
    """`2026-12-01 18:05:09` in Asia/Shanghai from an ISO timestamp (the APIs answer in UTC)."""
    if value is None or value == "":
        return "—"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def province(code: str | None) -> str:
    if not code:
        return "—"
    name = PROVINCES.get(code[:2] + "0000")
    return f"{name} {code}" if name else code


def label(code: object) -> str:
    if code is None:
        return "—"
    return LABELS.get(str(code), str(code))


def masked_name(name: str | None) -> str:
    """Names from the APIs come masked already; a clear one (no `*`) is masked here, never shown."""
    if not name:
        return "—"
    return name if "*" in name else mask_name(name)


def masked_text(value: object) -> str:
    """Free text (an alert's detail) with any 18-character ID number in it masked."""
    return _ID_NO.sub(lambda match: mask_id_no(match.group(0)), str(value))
