"""Benchmark (issue 12): verify a province node's audit chain of N entries (default 100,000), as
`POST /v1/ops/audit:verify` does: recompute every hash, check the checkpointed head, replay every journaled
posting against the stored postings and balances. A benchmark, not a test:

    .venv/bin/python infra/bench_audit.py [--entries 100000] [--writers 1] [--postgres URL]

It builds a scratch node database (SQLite in a temporary folder by default; with --postgres a throwaway schema
there, dropped afterwards) through the node's own migrations and ledger code, then times the verification.
`--writers N` writes with N concurrent transactions (on PostgreSQL each its own connection; their entries wait
in audit_pending and are sealed into the chain afterwards, timed separately)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from services.province_node.adapters import ledger_repo
from services.province_node.bootstrap import MIGRATIONS
from services.province_node.config import NodeSettings
from services.province_node.domain import ledger
from shared import audit
from shared.db import ReadView, UnitOfWork, drop_schemas, open_database

BATCH = 1000
ACCOUNTS = 200


async def run(entries: int, postgres_url: str, writers: int = 1) -> None:
    with tempfile.TemporaryDirectory() as home:
        prefix = f"bench{secrets.token_hex(3)}_"
        settings = NodeSettings(province_admdvs="640000", home=Path(home), database_url=postgres_url,
                                db_schema_prefix=prefix)
        db = await open_database(settings, settings.db_instance, MIGRATIONS)
        try:
            now = datetime.now(UTC)
            async with UnitOfWork(db) as uow:
                await ledger_repo.ensure_system_accounts(uow, now)
                for n in range(ACCOUNTS):
                    await ledger_repo.open_account(uow, ledger.personal_account(f"P{n}"), "PA", f"P{n}", now)
                await uow.commit()
            await audit.ensure_genesis(db, ledger_repo.AUDITED_LEDGER)
            started = time.perf_counter()
            counter = iter(range(1, entries))  # entry 0 is the genesis

            async def writer(number: int) -> None:
                # Each writer its own accounts: concurrent transactions then share no ledger row.
                while True:
                    async with UnitOfWork(db) as uow:
                        wrote = 0
                        for written in counter:
                            slot = (written % (ACCOUNTS // writers)) * writers + number
                            account = ledger.personal_account(f"P{slot}")
                            await ledger_repo.post(uow, ledger.move("MONTHLY_CREDIT", f"B{written}", ledger.FUNDING,
                                                                    account, 100 + written % 900), now)
                            wrote += 1
                            if wrote == BATCH:
                                break
                        if not wrote:
                            return
                        await uow.commit()

            await asyncio.gather(*(writer(n) for n in range(writers)))
            print(f"wrote {entries} journal entries ({writers} writer(s)) in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            sealed = await audit.seal(db)
            if sealed:
                print(f"sealed {sealed} pending entries into the chain in {time.perf_counter() - started:.1f} s")
            async with ReadView(db) as view:
                head = await audit.head(view)
            started = time.perf_counter()
            verdict = await audit.verify(db, {head.head_seq: head.head_hash}, ledger_repo.AUDITED_LEDGER)
            elapsed = time.perf_counter() - started
            print(f"verified {verdict.entries_checked} entries (ok={verdict.ok}) in {elapsed:.2f} s "
                  f"({'SQLite' if not postgres_url else 'PostgreSQL'})")
            if not verdict.ok:
                raise SystemExit(f"verification failed: {verdict}")
        finally:
            await db.dispose()
            if postgres_url:
                await drop_schemas(postgres_url, [f"{prefix}{settings.db_instance}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=1, help="concurrent writing transactions (default 1)")
    parser.add_argument("--postgres", default="", help="postgresql+asyncpg://... (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(run(args.entries, args.postgres, max(1, min(args.writers, ACCOUNTS))))


if __name__ == "__main__":
    main()
