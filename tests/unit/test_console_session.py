"""Console sessions without server state: a signed, expiring cookie any hub replica accepts; forged, expired or
other-token cookies are refused; CSRF tokens bound to the session."""

from __future__ import annotations

from services.national_hub.entrypoints.console.session import (
    SessionKeys,
    csrf_ok,
    open_session,
    read_session,
    token_matches,
)

KEYS = SessionKeys.from_settings("token-key", "operator-token")
NOW_S = 1_800_000_000.0


def test_a_cookie_is_accepted_by_any_replica_holding_the_same_keys_until_it_expires() -> None:
    session, cookie = open_session(KEYS, NOW_S, ttl_s=60)
    other_replica = SessionKeys.from_settings("token-key", "operator-token")
    assert read_session(other_replica, cookie, NOW_S + 59) == session
    assert read_session(other_replica, cookie, NOW_S + 60) is None


def test_forged_malformed_or_foreign_cookies_are_refused() -> None:
    _, cookie = open_session(KEYS, NOW_S)
    payload, signature = cookie.split(".")
    assert read_session(KEYS, f"{payload}.{signature[:-2]}xx", NOW_S) is None
    assert read_session(KEYS, f"{payload[:-4]}AAAA.{signature}", NOW_S) is None
    for junk in (None, "", "x", "a.b.c", ".", "%%%.%%%"):
        assert read_session(KEYS, junk, NOW_S) is None
    assert read_session(SessionKeys.from_settings("another-key", "operator-token"), cookie, NOW_S) is None
    # A new operator token (restart with another YIBAO_OPERATOR_TOKEN) ends every session.
    assert read_session(SessionKeys.from_settings("token-key", "rotated-token"), cookie, NOW_S) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    one, _ = open_session(KEYS, NOW_S)
    two, _ = open_session(KEYS, NOW_S)
    assert csrf_ok(KEYS, one, one.csrf_token(KEYS))
    assert not csrf_ok(KEYS, one, two.csrf_token(KEYS))
    assert not csrf_ok(KEYS, one, None) and not csrf_ok(KEYS, one, "")


def test_the_operator_token_comparison() -> None:
    assert token_matches(" operator-token ", "operator-token")
    assert not token_matches("", "operator-token") and not token_matches("operator", "operator-token")
