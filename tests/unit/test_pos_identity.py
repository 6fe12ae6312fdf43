"""What the till learns about a person without their clear ID number, and the 医保码 token (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from shared import tokens
from shared.ids import InvalidIdNo, age_on, birth_date_of, card_hash, gender_of, make_id_no
from shared.regions import is_admdvs, province_of


def test_birth_date_and_gender_from_the_id_number() -> None:
    man, woman = make_id_no("64020219650412001"), make_id_no("64020219650412002")
    assert birth_date_of(man) == date(1965, 4, 12)
    assert (gender_of(man), gender_of(woman)) == ("1", "2")
    with pytest.raises(InvalidIdNo):
        birth_date_of(make_id_no("64020219651332001"))  # the 32nd of the 13th month


def test_age_counts_completed_years() -> None:
    born = date(1965, 4, 12)
    assert age_on(born, date(2025, 4, 11)) == 59
    assert age_on(born, date(2025, 4, 12)) == 60


def test_card_hash_is_keyed_and_ignores_surrounding_spaces() -> None:
    assert card_hash(b"k", " M12345678 ") == card_hash(b"k", "M12345678") != card_hash(b"other", "M12345678")


def test_provinces_of_region_codes() -> None:
    assert province_of("510100") == "510000" and province_of("640000") == "640000"
    assert is_admdvs("510100") and not is_admdvs("51010") and not is_admdvs(510100)


def test_ec_token_names_person_and_province_and_is_no_access_token() -> None:
    ec = tokens.issue_ec_token(b"key", "6400001234567890", "640000", 1000, 1300)
    claims = tokens.verify_ec_token(b"key", ec, 1100)
    assert (claims.psn_no, claims.insuplc_admdvs) == ("6400001234567890", "640000")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(b"key", ec, 1100)  # shown at a till, it must not open the citizen API
    access = tokens.issue(b"key", tokens.Claims("6400001234567890", "640000", ("face",), 1000, 1300))
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_ec_token(b"key", access, 1100)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_ec_token(b"key", ec, 1300)  # expired
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_ec_token(b"other", ec, 1100)
