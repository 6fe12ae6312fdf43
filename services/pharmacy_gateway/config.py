"""Pharmacy gateway settings (env YIBAO_*)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    http_port: int = 8001
    # The national gateway's signature window (x-tif-timestamp ± this); nonces are remembered twice as long.
    signature_window_s: int = 300
    # How long the till waits for the payer's home province before answering infcode -1.
    province_call_timeout_s: float = 3.0
    # The hub's directory is asked on the till's path too (02 ID card, 03 social-security card).
    directory_call_timeout_s: float = 2.0
    # Directory answers (ID or card -> psn_no, province) change only when a person moves; kept this long.
    directory_cache_ttl_s: float = 60.0
    # Connections kept open to each province node (and to the hub).
    node_max_connections: int = 64
    nonce_cleanup_interval_s: float = 60.0
    # PostgreSQL with replicas: how soon a change made through another replica (an institution registered
    # again, a catalogue import) is seen here (service_layer/context.py: a read of two small rows when nothing
    # changed).
    registry_refresh_s: float = 1.0
    # Clearing events wait for nobody (clearing windows are hours): the relay sends them in batches.
    outbox_linger_s: float = 0.05
    max_message_bytes: int = 256 * 1024

    @property
    def service_name(self) -> str:
        return "gateway"
