"""Kafka topics. Every message is keyed by the id of the thing it is about (transfer_id, binding_id), so all
messages of one transfer stay in one partition, in order. Except what the hub asks of a receiver's wallet (a
transfer's credit, and its cancel): keyed by the receiver's psn_no, so that one consumer at a time credits a
wallet and replicas do not queue on its row (national_hub transfers.receiver_key); a credit and its cancel still
share that key, so their order holds.

Partition counts are sized once for the largest replica count (`yibao up --replicas N`, N <= 9) with room to
spare: the replicas of a service form one consumer group and split the partitions, so a replica beyond the
partition count would get none. Changing a count later re-maps keys to partitions, so it is not done lightly
(the launcher grows an existing topic that has fewer, see launcher/kafka.py)."""

from __future__ import annotations

HUB_INBOUND = "yibao.hub.inbound.v1"
HUB_INBOUND_PARTITIONS = 12
PROVINCE_INBOUND_PARTITIONS = 12


def province_inbound(admdvs: str) -> str:
    return f"yibao.province.{admdvs}.inbound.v1"


def topic_partitions(provinces: list[str]) -> dict[str, int]:
    """Every topic the federation uses, with its explicit partition count (created by the launcher)."""
    topics = {HUB_INBOUND: HUB_INBOUND_PARTITIONS}
    for admdvs in provinces:
        topics[province_inbound(admdvs)] = PROVINCE_INBOUND_PARTITIONS
    return topics
