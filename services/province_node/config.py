"""Province node settings (env YIBAO_*). The transfer knobs are the contract's `YIBAO_TRANSFER_*`."""

from __future__ import annotations

from pydantic import Field

from services.province_node.domain.transfer_rules import QuietHours, TransferPolicy
from shared.settings import ServiceSettings


class NodeSettings(ServiceSettings):
    province_admdvs: str = Field(pattern=r"^\d{6}$")
    transfer_quiet_hours: str = "22:00-06:00"
    transfer_max_per_day: int = 3
    transfer_max_fen: int = 200_000
    token_ttl_s: int = 1800
    # Lifetime of a 医保码 (ec token) shown to a till: long enough for look-up, pre-settle and settle.
    ec_token_ttl_s: int = 300
    # Year-end quota closing and premium reservation expiry run this often.
    housekeeping_interval_s: float = 30.0
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

    def transfer_policy(self) -> TransferPolicy:
        return TransferPolicy(
            max_per_day=self.transfer_max_per_day,
            max_amount_fen=self.transfer_max_fen,
            quiet_hours=QuietHours.parse(self.transfer_quiet_hours),
        )
