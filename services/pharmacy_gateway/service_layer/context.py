"""What every use case of the gateway needs, built once by bootstrap, and the in-memory registry of
institutions, sign-ins and the catalogue that every POS message consults.

The registry is a cache of the gateway's own tables, reloaded after each admin change and extended after each
sign-in commits; it keeps three queries off every message's path. On SQLite the gateway is one process and the
only writer of those tables, so that is exact. On PostgreSQL other replicas write them too: a sign-in or an
institution this replica does not know is read through from the table (and credentials that no longer match
are checked against it), and the institutions and catalogues are reloaded every `registry_refresh_s`, so a
change made through one replica holds on all within that time (a re-registration revokes old credentials on
every replica within it).

Sign-ins are not reloaded: one never changes once made, and every till signs in again each working day, so the
table only grows (reloading it every second would cost more each day). The cache keeps the newest
`SIGN_INS_CACHED` and reads an older one through from the table, on both backends."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from services.pharmacy_gateway.adapters.federation_http import DirectoryClient, ProvinceNodes
from services.pharmacy_gateway.adapters.medical_tables import InstitutionProfile, MedicalCatalogueEntry
from services.pharmacy_gateway.adapters.tables import CatalogueItem, Institution, SignIn
from services.pharmacy_gateway.config import GatewaySettings
from services.pharmacy_gateway.domain.medical_bill import CatalogueEntry as MedicalCatalogueEntryView
from shared.clock import Clock
from shared.db import Database, ReadView
from shared.tables import table

INSTITUTIONS = table(Institution)
SIGN_INS = table(SignIn)
CATALOGUE = table(CatalogueItem)
PROFILES = table(InstitutionProfile)
MEDICAL_CATALOGUE = table(MedicalCatalogueEntry)


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

    async def load(self, db: Database) -> None:
        async with ReadView(db) as view:
            institutions = [InstitutionView(r.fixmedins_code, r.fixmedins_name, r.admdvs, r.paas_id,
                                            r.paas_token_hash)
                            for r in await view.execute(sa.select(INSTITUTIONS))]
            catalogue = {r.med_list_codg: r.category
                         for r in await view.execute(sa.select(CATALOGUE.c.med_list_codg, CATALOGUE.c.category))}
            profiles = {r.fixmedins_code: (r.kind, r.hosp_lv) for r in await view.execute(sa.select(PROFILES))}
            medical = {(r.scope, r.med_list_codg): MedicalCatalogueEntryView(
                r.category, r.chrgitm_lv, Decimal(r.selfpay_prop), r.pric_uplmt_fen)
                for r in await view.execute(sa.select(MEDICAL_CATALOGUE))}
        self.profiles = profiles
        self.medical_catalogue = medical
        self.by_paas_id = {i.paas_id: i for i in institutions}
        self.by_code = {i.fixmedins_code: i for i in institutions}
        self.category_of = catalogue

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
