"""What every use case of the node needs, built once by bootstrap."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.province_node.adapters.hub_client import HubClient
from services.province_node.adapters.sms import RecordingSms, SmsPort
from services.province_node.config import NodeSettings
from services.province_node.domain.transfer_rules import TransferPolicy
from shared.clock import Clock
from shared.db import Database


@dataclass
class NodeContext:
    settings: NodeSettings
    db: Database
    clock: Clock
    hub: HubClient
    policy: TransferPolicy
    sms: SmsPort = field(default_factory=RecordingSms)

    @property
    def admdvs(self) -> str:
        return self.settings.province_admdvs

    @property
    def source(self) -> str:
        return self.settings.service_name
