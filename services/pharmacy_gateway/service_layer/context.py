"""What every use case of the gateway needs, built once by bootstrap, and the in-memory registry of
institutions, sign-ins and the catalogue that every POS message consults.

The registry is a cache of the gateway's own tables; it keeps three queries off every message's path. On SQLite
the gateway is one process and the only writer of those tables, so reloading after each admin change is exact.
On PostgreSQL other replicas write them too: a sign-in or an institution this replica does not know is read
through from the table (and credentials that no longer match are checked against it), and every
`registry_refresh_s` the registry reads the two rows of `registry_stamps` and brings in a part whose stamp
moved (`institutions`: the institutions and profiles stamped since; `catalogue`: both catalogues, whole). Every
admin change bumps its part's stamp in its own transaction (`stamp`), so a change made through one replica
holds on all within that time (a re-registration revokes old credentials on every replica within it), and a
replica where nothing changed reads two small rows, not a national list of institutions and catalogues, each
second.

Sign-ins are not reloaded: one never changes once made, and every till signs in again each working day, so the
table only grows (reloading it every second would cost more each day). The cache keeps the newest
`SIGN_INS_CACHED` and reads an older one through from the table, on both backends."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from services.pharmacy_gateway.adapters.federation_http import DirectoryClient, ProvinceNodes
from services.pharmacy_gateway.adapters.medical_tables import InstitutionProfile, MedicalCatalogueEntry
from services.pharmacy_gateway.adapters.tables import CatalogueItem, Institution, RegistryStamp, SignIn
from services.pharmacy_gateway.config import GatewaySettings
from services.pharmacy_gateway.domain.medical_bill import CatalogueEntry as MedicalCatalogueEntryView
from shared.clock import Clock
from shared.db import Database, Prepared, ReadView, UnitOfWork
from shared.tables import table

INSTITUTIONS = table(Institution)
SIGN_INS = table(SignIn)
CATALOGUE = table(CatalogueItem)
PROFILES = table(InstitutionProfile)
MEDICAL_CATALOGUE = table(MedicalCatalogueEntry)
STAMPS = table(RegistryStamp)

# The registry's parts, each reloaded on its own when its stamp moves.
INSTITUTIONS_PART = "institutions"  # institutions and their profiles (kind, level)
CATALOGUE_PART = "catalogue"  # the pharmacy catalogue and the medical catalogue
_STAMPS = Prepared(sa.select(STAMPS.c.part, STAMPS.c.version))
_BUMP = Prepared(sa.update(STAMPS).where(STAMPS.c.part == sa.bindparam("b_part"))
                 .values(version=STAMPS.c.version + 1).returning(STAMPS.c.version))


async def stamp(uow: UnitOfWork, part: str) -> int:
    """Mark `part` changed, in the transaction that changes it, and return the new stamp (institutions and
    profiles carry it in their `stamp` column). Two admin changes of one part queue on its row until the first
    commits, so when a replica reads stamp S, every row stamped S or less has committed: reading the rows
    stamped after the stamp it holds misses none."""
    return int((await uow.execute(_BUMP, {"b_part": part})).scalar_one())


@dataclass(frozen=True)
class InstitutionView:
    fixmedins_code: str
    fixmedins_name: str
    admdvs: str
    paas_id: str
    paas_token_hash: str


# Sign-ins the registry keeps in memory: a day's sign-ins of a province's tills, several times over.
SIGN_INS_CACHED = 100_000


@dataclass
class Registry:
    by_paas_id: dict[str, InstitutionView] = field(default_factory=dict)
    by_code: dict[str, InstitutionView] = field(default_factory=dict)
    sign_ins: dict[str, str] = field(default_factory=dict)  # sign_no -> fixmedins_code
    category_of: dict[str, str] = field(default_factory=dict)  # med_list_codg -> category
    # Hospitals and clinics: fixmedins_code -> (kind, hosp_lv) (absent: a pharmacy), and the medical catalogue
    # by (scope, med_list_codg), scope a province code or NATIONAL_SCOPE (service_layer/medical_handlers.py).
    profiles: dict[str, tuple[str, str]] = field(default_factory=dict)
    medical_catalogue: dict[tuple[str, str], MedicalCatalogueEntryView] = field(default_factory=dict)

    # The stamps of the parts as last loaded (absent: never loaded).
    stamps: dict[str, int] = field(default_factory=dict)
    # One refresh at a time in this process (the periodic one and an admin change's): one that read earlier
    # must not apply its older rows over a later one's.
    _refreshing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    async def load(self, db: Database) -> None:
        """Every part, whatever its stamp (at start)."""
        self.stamps = {}
        await self.refresh(db)

    async def refresh(self, db: Database) -> None:
        """Bring in what changed since the last load (after an admin change here, and every `registry_refresh_s`
        on PostgreSQL): one small read when nothing did. Institutions and profiles: the rows stamped after the
        stamp held (a registration reads one row, not the national list). Catalogues: reloaded whole (imports
        are rare and replace entries in bulk). The stamps are read before the rows, so a change committed in
        between is loaded now or at the next refresh, never missed."""
        async with self._refreshing, ReadView(db) as view:
            stamps = {row.part: int(row.version) for row in await view.execute(_STAMPS)}
            held = self.stamps.get(INSTITUTIONS_PART)
            if stamps.get(INSTITUTIONS_PART) != held:
                await self._load_institutions(view, since=held)
            if stamps.get(CATALOGUE_PART) != self.stamps.get(CATALOGUE_PART):
                await self._load_catalogues(view)
            self.stamps = stamps  # under the lock, with the rows it stands for

    async def _load_institutions(self, view: ReadView, since: int | None) -> None:
        """Every institution and profile (`since` None), else those stamped after `since`. A changed institution
        replaces the one of its code, whose old paas_id then stops working here."""
        institutions, profiles = sa.select(INSTITUTIONS), sa.select(PROFILES)
        if since is not None:
            institutions = institutions.where(INSTITUTIONS.c.stamp > since)
            profiles = profiles.where(PROFILES.c.stamp > since)
        changed = list(await view.execute(institutions))
        changed_profiles = list(await view.execute(profiles))
        # Applied without a pause (no await): messages never see half a change. A full load starts afresh.
        if since is None:
            self.by_paas_id, self.by_code, self.profiles = {}, {}, {}
        for r in changed:
            replaced = self.by_code.get(r.fixmedins_code)
            if replaced is not None and replaced.paas_id != r.paas_id:
                self.by_paas_id.pop(replaced.paas_id, None)
            institution = InstitutionView(r.fixmedins_code, r.fixmedins_name, r.admdvs, r.paas_id, r.paas_token_hash)
            self.by_paas_id[institution.paas_id] = self.by_code[institution.fixmedins_code] = institution
        for r in changed_profiles:
            self.profiles[r.fixmedins_code] = (r.kind, r.hosp_lv)

    async def _load_catalogues(self, view: ReadView) -> None:
        category_of = {r.med_list_codg: r.category for r in await view.execute(
            sa.select(CATALOGUE.c.med_list_codg, CATALOGUE.c.category))}
        medical_catalogue = {(r.scope, r.med_list_codg): MedicalCatalogueEntryView(
            r.category, r.chrgitm_lv, Decimal(r.selfpay_prop), r.pric_uplmt_fen)
            for r in await view.execute(sa.select(MEDICAL_CATALOGUE))}
        self.category_of, self.medical_catalogue = category_of, medical_catalogue  # both of one import

    def remember_sign_in(self, sign_no: str, fixmedins_code: str) -> None:
        """Keep a sign-in (made here, or read from the table), forgetting the oldest beyond SIGN_INS_CACHED."""
        self.sign_ins[sign_no] = fixmedins_code
        while len(self.sign_ins) > SIGN_INS_CACHED:
            del self.sign_ins[next(iter(self.sign_ins))]  # dicts keep insertion order: the oldest first

    async def signed_in(self, db: Database, fixmedins_code: str, sign_no: str) -> bool:
        known = self.sign_ins.get(sign_no)
        if known is None:
            async with ReadView(db) as view:
                known = (await view.execute(sa.select(SIGN_INS.c.fixmedins_code).where(
                    SIGN_INS.c.sign_no == sign_no))).scalar()
            if known is not None:
                self.remember_sign_in(sign_no, known)
        return known == fixmedins_code

    async def institution_from_table(self, db: Database, paas_id: str) -> InstitutionView | None:
        """Read through to the table (PostgreSQL, where other replicas register institutions too)."""
        if db.inline:
            return self.by_paas_id.get(paas_id)
        async with ReadView(db) as view:
            row = (await view.execute(sa.select(INSTITUTIONS).where(INSTITUTIONS.c.paas_id == paas_id))).first()
        if row is None:
            return None
        institution = InstitutionView(row.fixmedins_code, row.fixmedins_name, row.admdvs, row.paas_id,
                                      row.paas_token_hash)
        self.by_paas_id[paas_id] = self.by_code[institution.fixmedins_code] = institution
        return institution


@dataclass
class GatewayContext:
    settings: GatewaySettings
    db: Database
    clock: Clock
    directory: DirectoryClient
    nodes: ProvinceNodes
    registry: Registry
    source: str = "gateway"
    # inf_refmsgid serials: random start, so a restart within the same second does not repeat one.
    serials: itertools.count[int] = field(default_factory=lambda: itertools.count(random.randrange(10**9)))

    @property
    def token_key(self) -> bytes:
        return self.settings.token_key.encode()
