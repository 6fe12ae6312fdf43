"""Citizen access tokens: issued by the hub's identity service, checked by every province node without a call
back to the hub (HMAC-SHA256 over a compact JSON claim set, key shared by the federation)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import orjson

FACE_STEP_UP_MAX_AGE_S = 300  # the contract: a face token under 5 minutes old counts as a step-up


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True)
class Claims:
    psn_no: str
    insuplc_admdvs: str
    amr: tuple[str, ...]
    issued_at_s: int
    expires_at_s: int

    def has_face_step_up(self, now_s: float) -> bool:
        return "face" in self.amr and now_s - self.issued_at_s < FACE_STEP_UP_MAX_AGE_S


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, claims: Claims) -> str:
    body = _b64(orjson.dumps({"sub": claims.psn_no, "adm": claims.insuplc_admdvs, "amr": list(claims.amr),
                              "iat": claims.issued_at_s, "exp": claims.expires_at_s}))
    signature = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def verify(key: bytes, token: str, now_s: float) -> Claims:
    body, _, signature = token.partition(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature, expected):
        raise InvalidToken("bad signature")
    try:
        raw = orjson.loads(_unb64(body))
        claims = Claims(str(raw["sub"]), str(raw["adm"]), tuple(raw["amr"]), int(raw["iat"]), int(raw["exp"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidToken("malformed token") from exc
    if now_s >= claims.expires_at_s:
        raise InvalidToken("expired")
    return claims


# 医保码 (electronic medical-insurance credential, mdtrt_cert_type 01): what the citizen's app shows as a QR code
# and a pharmacy's till scans. It names the person and their home province, so the gateway routes the payment
# without asking the hub. It is signed with a key derived from the federation's token key: an ec token shown at
# a till must never work as an access token for the citizen API (and vice versa).
EC_TOKEN_AMR = ("ec",)


def _ec_key(key: bytes) -> bytes:
    return hmac.new(key, b"yibao-ec-token-v1", hashlib.sha256).digest()


def issue_ec_token(key: bytes, psn_no: str, insuplc_admdvs: str, issued_at_s: int, expires_at_s: int) -> str:
    return issue(_ec_key(key), Claims(psn_no, insuplc_admdvs, EC_TOKEN_AMR, issued_at_s, expires_at_s))


def verify_ec_token(key: bytes, token: str, now_s: float) -> Claims:
    claims = verify(_ec_key(key), token, now_s)
    if claims.amr != EC_TOKEN_AMR:
        raise InvalidToken("not an ec token")
    return claims
