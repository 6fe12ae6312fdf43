"""Province node settings (env YIBAO_*). The transfer knobs are the contract's `YIBAO_TRANSFER_*`; a province may
override them (YIBAO_TRANSFER_OVERRIDES) and may make its receivers accept transfers
(YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES). Every node of a federation gets the same values and applies what
concerns its own province."""

from __future__ import annotations

from datetime import time

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.province_node.domain.transfer_rules import QuietHours, TransferPolicy
from shared.settings import ServiceSettings


class TransferOverride(BaseModel):
    """One province's own transfer limits; a knob left out keeps the federation-wide value. JSON in
    YIBAO_TRANSFER_OVERRIDES, keyed by province: `{"620000": {"max_per_day": 5, "max_fen": 100000,
    "quiet_hours": ""}}` ("" switches quiet hours off there)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_per_day: int | None = Field(default=None, ge=0)
    max_fen: int | None = Field(default=None, gt=0)
    quiet_hours: str | None = None

    @field_validator("quiet_hours")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            QuietHours.parse(value)  # a typo fails at start-up, not at the first transfer
        return value


def _province_codes(text: str) -> frozenset[str]:
    return frozenset(code.strip() for code in text.split(",") if code.strip())


class NodeSettings(ServiceSettings):
    province_admdvs: str = Field(pattern=r"^\d{6}$")
    transfer_quiet_hours: str = "22:00-06:00"
    transfer_max_per_day: int = 3
    transfer_max_fen: int = 200_000
    transfer_overrides: dict[str, TransferOverride] = Field(default_factory=dict)
    # Provinces whose receivers must accept a transfer (default none), comma-separated; read by the
    # destination node. An unaccepted transfer returns to the giver at `transfer_accept_by` (Asia/Shanghai).
    transfer_accept_required_provinces: str = ""
    transfer_accept_by: str = "06:00"
    # How often the destination node rejects the held transfers whose accept_by has passed.
    acceptance_scan_interval_s: float = 5.0
    token_ttl_s: int = 1800
    # Issue 13: the SMS gateway's bearer token for POST /v1/sms/inbound (the launcher sets it: API.md).
    sms_inbound_token: str = "dev-only-sms-inbound-token"
    # Lifetime of a 医保码 (ec token) shown to a till: long enough for look-up, pre-settle and settle.
    ec_token_ttl_s: int = 300
    # Year-end quota closing and premium reservation expiry run this often.
    housekeeping_interval_s: float = 30.0
    # How often system accounts' delta rows are folded into their balances (adapters/ledger_repo.py).
    system_fold_interval_s: float = 1.0
    # A premium slot reserved for a wallet payment that never came is freed after this long.
    premium_reservation_ttl_s: float = 300.0
    # Password hashing cost for credentials enrolled at import (PBKDF2-SHA256).
    password_hash_iterations: int = 60_000

    @property
    def service_name(self) -> str:
        return f"node-{self.province_admdvs}"

    @property
    def db_instance(self) -> str:
        return f"node_{self.province_admdvs}"

    @field_validator("transfer_overrides")
    @classmethod
    def _keyed_by_province(cls, value: dict[str, TransferOverride]) -> dict[str, TransferOverride]:
        for code in value:
            if len(code) != 6 or not code.isdigit() or not code.endswith("0000"):
                raise ValueError(f"transfer override key {code!r} is not a province code such as 620000")
        return value

    @field_validator("transfer_accept_required_provinces")
    @classmethod
    def _province_list(cls, value: str) -> str:
        for code in _province_codes(value):
            if len(code) != 6 or not code.isdigit():
                raise ValueError(f"{code!r} is not a province code such as 620000")
        return value

    @field_validator("transfer_accept_by")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        time.fromisoformat(value)
        return value

    def transfer_policy(self) -> TransferPolicy:
        """The federation-wide limits, with this province's override applied where it names a knob."""
        own = self.transfer_overrides.get(self.province_admdvs, TransferOverride())
        return TransferPolicy(
            max_per_day=self.transfer_max_per_day if own.max_per_day is None else own.max_per_day,
            max_amount_fen=self.transfer_max_fen if own.max_fen is None else own.max_fen,
            quiet_hours=QuietHours.parse(self.transfer_quiet_hours if own.quiet_hours is None else own.quiet_hours),
        )

    @property
    def receivers_must_accept(self) -> bool:
        """This node is a destination whose receivers accept each transfer before it is credited."""
        return self.province_admdvs in _province_codes(self.transfer_accept_required_provinces)

    @property
    def accept_by_time(self) -> time:
        return time.fromisoformat(self.transfer_accept_by)
