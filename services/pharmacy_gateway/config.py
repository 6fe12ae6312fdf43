"""Pharmacy gateway settings (env YIBAO_*)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    http_port: int = 8001
    # The national gateway's signature window (x-tif-timestamp ± this).
    signature_window_s: int = 300
    # How long the till waits for the payer's home province before answering infcode -1.
    province_call_timeout_s: float = 3.0

    @property
    def service_name(self) -> str:
        return "gateway"
