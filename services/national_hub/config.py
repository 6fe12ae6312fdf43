"""Hub settings (env YIBAO_*)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class HubSettings(ServiceSettings):
    http_port: int = 8000
    # A transfer not credited within this time is cancelled at the destination and refunded (issue: refunds).
    transfer_timeout_s: float = 60.0
    timeout_scan_interval_s: float = 1.0
    # A transfer held for the receiver's acceptance is rejected by its destination node at accept_by; the hub
    # cancels it only if that rejection has not arrived this long after accept_by (the node was down).
    acceptance_margin_s: float = 300.0
    token_ttl_s: int = 1800
    # Which province nodes the operators' dead-letter listing asks (the launcher sets YIBAO_PROVINCES, e.g.
    # "640000,620000"), and where the gateway answers (the launcher passes no gateway URL: its fixed port).
    provinces: str = ""
    gateway_url: str = "http://127.0.0.1:8001"

    @property
    def province_codes(self) -> list[str]:
        return [code.strip() for code in self.provinces.split(",") if code.strip()]

    @property
    def service_name(self) -> str:
        return "hub"
