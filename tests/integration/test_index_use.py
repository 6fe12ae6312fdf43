"""The statements that run every accept, or every round of a periodic job, on tables that only grow, read them
through an index: the generic plan PostgreSQL caches for each, on a fresh node's migrated schema (empty, never
analyzed), names the index meant for it. Without one, each call read every row the table ever held."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from services.national_hub.adapters import transfer_repo as hub_transfer_repo
from services.pharmacy_gateway.service_layer import medical_records
from services.pharmacy_gateway.service_layer import settlements as gateway_settlements
from services.province_node.adapters import transfer_repo
from services.province_node.adapters.mutual_aid_tables import PremiumPayment, QuotaGrant
from shared import dead_letters
from shared.db import Database
from shared.tables import table
from tests.support.gateway import InProcessGateway
from tests.support.plans import generic_plan, plan_indexes

GRANTS, PREMIUMS = table(QuotaGrant), table(PremiumPayment)
NOW = datetime(2026, 12, 3, tzinfo=UTC)


async def _indexes(db: Database, statement: sa.Executable, params: dict[str, object]) -> list[str]:
    if db.inline:
        pytest.skip("SQLite plans each statement as it runs")
    return plan_indexes(await generic_plan(db, statement, params))


async def test_the_daily_limit_counts_the_givers_transfers_of_the_day(node_database: Database) -> None:
    statement = transfer_repo._SENT_ON_DAY.statement
    assert await _indexes(node_database, statement, {"giver": "P1", "day": "2026-12-03"}) == [
        "ix_transfers_out_giver_day"]


# The questions as services/province_node/service_layer/quotas.py close_grants and premiums.py
# expire_reservations ask them (their statements are built where they run), and shared/dead_letters.py's.
JOB_QUESTIONS: dict[str, tuple[sa.Select[Any], dict[str, object]]] = {
    "ix_quota_grants_state_year": (sa.select(GRANTS).where(GRANTS.c.state == "OPEN", GRANTS.c.year < 2026), {}),
    "ix_premium_payments_state_created_at": (sa.select(PREMIUMS.c.payment_id).where(
        PREMIUMS.c.state == "RESERVED", PREMIUMS.c.created_at < NOW), {}),
    "ix_inbox_received_at": (dead_letters.oldest_inbox_ids(NOW), {}),
}


@pytest.mark.parametrize("index", sorted(JOB_QUESTIONS))
async def test_each_periodic_jobs_question_reads_its_index(node_database: Database, index: str) -> None:
    statement, params = JOB_QUESTIONS[index]
    assert index in await _indexes(node_database, statement, params)


@pytest.mark.parametrize("relation", ["settlements", "medical_settlement_records"])
async def test_reconciliation_reads_the_institutions_days(gateway: InProcessGateway, relation: str) -> None:
    """3201 (services/pharmacy_gateway/service_layer/settlements.py and medical_records.py `totals`, whose
    statements are built where they run): an institution's settlements of some days."""
    settlements = {"settlements": gateway_settlements.SETTLEMENTS,
                   "medical_settlement_records": medical_records.RECORDS}[relation]
    statement = sa.select(sa.func.count()).where(
        settlements.c.fixmedins_code == "P51010000001", settlements.c.settle_day >= "2026-12-01",
        settlements.c.settle_day <= "2026-12-03")
    assert await _indexes(gateway.ctx.db, statement, {}) == [f"ix_{relation}_institution_day"]


async def test_the_hubs_timeout_scan_reads_the_routed_transfers_past_their_deadline(hub_database: Database) -> None:
    """services/national_hub/adapters/transfer_repo.py `overdue` and `routed_of_binding`: the few transfers still
    ROUTED, out of every transfer the hub ever routed (most of which are past their deadline, and settled)."""
    transfers = hub_transfer_repo.TRANSFERS
    overdue = sa.select(transfers.c.transfer_id).where(
        transfers.c.state == "ROUTED", transfers.c.deadline_at < NOW).limit(500).with_for_update(skip_locked=True)
    of_binding = sa.select(transfers.c.transfer_id).where(
        transfers.c.binding_id == "B1", transfers.c.state == "ROUTED")
    assert await _indexes(hub_database, overdue, {}) == ["ix_hub_transfers_state_deadline"]
    assert await _indexes(hub_database, of_binding, {}) == ["ix_hub_transfers_state_deadline"]
