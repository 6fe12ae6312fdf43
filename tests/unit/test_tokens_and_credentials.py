import base64
from collections.abc import Callable

import pytest

from shared import tokens
from shared.credentials import face_hash, hash_password, verify_password


def test_token_round_trip_and_face_step_up_window() -> None:
    claims = tokens.Claims("6400001", "640000", ("face",), 1000, 2800)
    token = tokens.issue(b"key", claims)
    assert tokens.verify(b"key", token, 1200) == claims
    assert claims.has_face_step_up(1299) and not claims.has_face_step_up(1300)
    assert not tokens.Claims("p", "640000", ("pwd",), 1000, 2800).has_face_step_up(1001)


@pytest.mark.parametrize("mutate", [lambda t: t + "x", lambda t: "x" + t, lambda t: t.split(".")[0]])
def test_tampered_tokens_are_refused(mutate: Callable[[str], str]) -> None:
    token = tokens.issue(b"key", tokens.Claims("6400001", "640000", ("pwd",), 1000, 2800))
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(b"key", mutate(token), 1200)


def test_expired_and_wrong_key_refused() -> None:
    token = tokens.issue(b"key", tokens.Claims("6400001", "640000", ("pwd",), 1000, 2800))
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(b"key", token, 2800)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(b"other", token, 1200)


def test_passwords_and_faces() -> None:
    stored = hash_password("s3cret", 1000)
    assert verify_password("s3cret", stored) and not verify_password("wrong", stored)
    assert not verify_password("s3cret", "garbage")
    image = base64.b64decode(base64.b64encode(b"face-of-mother"))
    assert face_hash(b"k", image) == face_hash(b"k", b"face-of-mother") != face_hash(b"k", b"other")
