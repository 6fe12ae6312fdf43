"""Kafka topics. Every message is keyed by the id of the thing it is about (transfer_id, binding_id), so all
messages of one transfer stay in one partition, in order."""

from __future__ import annotations

HUB_INBOUND = "yibao.hub.inbound.v1"
HUB_INBOUND_PARTITIONS = 6
PROVINCE_INBOUND_PARTITIONS = 3


def province_inbound(admdvs: str) -> str:
    return f"yibao.province.{admdvs}.inbound.v1"


def topic_partitions(provinces: list[str]) -> dict[str, int]:
    """Every topic the federation uses, with its explicit partition count (created by the launcher)."""
    topics = {HUB_INBOUND: HUB_INBOUND_PARTITIONS}
    for admdvs in provinces:
        topics[province_inbound(admdvs)] = PROVINCE_INBOUND_PARTITIONS
    return topics
