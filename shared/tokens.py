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
