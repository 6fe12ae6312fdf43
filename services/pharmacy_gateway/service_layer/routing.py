"""Who is paying, and which province's node holds their money, from the credential the till read
(mdtrt_cert_type): 01 医保码 (a signed token naming the person and province: no call needed), 02 resident ID
and 03 social-security card (keyed hashes looked up in the hub's directory, answers cached for a while since a
person's province changes only when they move). Every payment is routed by the credential, never by what the
till claims, so a till cannot charge a person whose credential it does not hold."""

from __future__ import annotations

from dataclasses import dataclass

from services.pharmacy_gateway.adapters.federation_http import OutcomeUnknown, Refused, Unreachable
from services.pharmacy_gateway.domain.wire import Refused as WireRefused
from services.pharmacy_gateway.service_layer.context import GatewayContext
from shared.contracts.internal_api import DirectoryLookup
from shared.ids import InvalidIdNo, card_hash, id_hash
from shared.tokens import InvalidToken, verify_ec_token

CERT_TYPES = {"01": "医保码", "02": "resident ID", "03": "social-security card"}


@dataclass(frozen=True)
class Payer:
    psn_no: str
    admdvs: str  # the home province, whose node holds the money


async def payer_of(ctx: GatewayContext, cert_type: str, cert_no: str) -> Payer:
    if cert_type == "01":
        try:
            claims = verify_ec_token(ctx.token_key, cert_no, ctx.clock.now().timestamp())
        except InvalidToken as exc:
            raise WireRefused(f"the 医保码 (mdtrt_cert_no) is not valid: {exc}; ask the person to refresh it") from exc
        return Payer(claims.psn_no, claims.insuplc_admdvs)
    key = ctx.settings.id_hash_key_bytes
    if cert_type == "02":
        try:
            query = DirectoryLookup(id_hash=id_hash(key, cert_no))
        except InvalidIdNo as exc:
            raise WireRefused("mdtrt_cert_no is not a valid resident ID number (GB 11643)") from exc
    elif cert_type == "03":
        query = DirectoryLookup(card_hash=card_hash(key, cert_no))
    else:
        raise WireRefused("mdtrt_cert_type must be 01 (医保码), 02 (resident ID) or 03 (social-security card)")
    try:
        found = await ctx.directory.lookup(query)
    except (Unreachable, OutcomeUnknown, Refused) as exc:
        raise WireRefused(f"the national directory did not answer ({exc}); try again") from exc
    if found is None:
        raise WireRefused(f"no insured person has this {CERT_TYPES[cert_type]}")
    return Payer(found.psn_no, found.insuplc_admdvs)
