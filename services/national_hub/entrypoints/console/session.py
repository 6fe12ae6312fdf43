"""Console sessions and CSRF tokens, with no server-side state.

The hub may run as several replicas behind HAProxy, so a session kept in one process's memory would be lost on
the next request that lands on another replica. The session is therefore a signed, expiring cookie: any replica
holding the hub's `token_key` checks it. It also carries a fingerprint of the operator token it was opened with,
so rotating the operator token (a restart with a new `YIBAO_OPERATOR_TOKEN`) ends every console session.

The CSRF token of a session is an HMAC of its random session id: every form carries it in a hidden field (htmx
requests in the `X-CSRF-Token` header); a POST whose token is missing or does not match is refused with 403
before anything runs. SameSite=Strict on the cookie already keeps other sites' forms from carrying it; the token
is the second lock the issue asks for.

Signing out deletes the cookie in the browser; a copy of the cookie taken before stays valid until it expires
(CONSOLE_SESSION_TTL_S), the price of keeping no session table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

COOKIE_NAME = "yibao_console"
# A working day of an operator's shift; after that, sign in again.
CONSOLE_SESSION_TTL_S = 8 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    session_id: str
    expires_at_s: int

    def csrf_token(self, keys: SessionKeys) -> str:
        return keys.sign(f"csrf|{self.session_id}")


@dataclass(frozen=True)
class SessionKeys:
    """The signing key (derived from the hub's token key, so console cookies can never pass for citizen tokens
    or the reverse) and the fingerprint of the current operator token."""

    signing_key: bytes
    operator_fingerprint: str

    @classmethod
    def from_settings(cls, token_key: str, operator_token: str) -> SessionKeys:
        signing_key = hmac.new(token_key.encode(), b"yibao-console-session-v1", hashlib.sha256).digest()
        fingerprint = hmac.new(signing_key, operator_token.encode(), hashlib.sha256).hexdigest()[:32]
        return cls(signing_key, fingerprint)

    def sign(self, text: str) -> str:
        digest = hmac.new(self.signing_key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_matches(given: str, expected: str) -> bool:
    """The operator token as typed into the sign-in form, compared in constant time."""
    return bool(given) and hmac.compare_digest(given.strip().encode(), expected.encode())


def open_session(keys: SessionKeys, now_s: float, ttl_s: int = CONSOLE_SESSION_TTL_S) -> tuple[Session, str]:
    """A new session and its cookie value: `payload.signature`, payload = base64(JSON)."""
    session = Session(secrets.token_urlsafe(18), int(now_s) + ttl_s)
    payload = base64.urlsafe_b64encode(orjson.dumps(
        {"sid": session.session_id, "exp": session.expires_at_s, "op": keys.operator_fingerprint})).decode()
    return session, f"{payload}.{keys.sign(payload)}"


def read_session(keys: SessionKeys, cookie: str | None, now_s: float) -> Session | None:
    """The session a cookie carries, or None when it is absent, forged, expired, or from another operator
    token. Never raises on a malformed cookie."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, signature = cookie.split(".")
    if not hmac.compare_digest(signature.encode(), keys.sign(payload).encode()):
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(payload.encode()))
        session = Session(str(data["sid"]), int(data["exp"]))
        fingerprint = str(data["op"])
    except (ValueError, KeyError, TypeError):
        return None
    if not hmac.compare_digest(fingerprint.encode(), keys.operator_fingerprint.encode()):
        return None
    if session.expires_at_s <= now_s:
        return None
    return session


def csrf_ok(keys: SessionKeys, session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), session.csrf_token(keys).encode())
