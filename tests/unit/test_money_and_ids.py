from decimal import Decimal

import pytest

from shared.ids import (
    InvalidIdNo,
    check_digit,
    id_hash,
    is_valid_id_no,
    make_id_no,
    mask_id_no,
    mask_name,
    mask_phone,
    normalize_id_no,
)
from shared.logs import scrub
from shared.money import InvalidAmount, fen_to_yuan, yuan_text, yuan_to_fen


def test_gb11643_check_digit_known_example() -> None:
    # The standard's worked example: 11010519491231002X.
    assert check_digit("11010519491231002") == "X"
    assert is_valid_id_no("11010519491231002X")
    assert normalize_id_no("11010519491231002x") == "11010519491231002X"


@pytest.mark.parametrize("bad", ["", "123", "110105194912310021", "11010519491231002Y", "1101051949123100２X"])
def test_invalid_id_numbers_are_refused(bad: str) -> None:
    with pytest.raises(InvalidIdNo):
        normalize_id_no(bad)


def test_masks_show_only_what_the_contract_allows() -> None:
    id_no = make_id_no("64010219900101123")
    assert mask_id_no(id_no) == id_no[:4] + "*" * 10 + id_no[-4:]
    assert mask_phone("13812341234") == "138****1234"
    assert mask_name("王芳") == "王*" and mask_name("李金山") == "李*山"


def test_id_hash_is_keyed_and_stable() -> None:
    id_no = make_id_no("62010219600101222")
    assert id_hash(b"k1", id_no) == id_hash(b"k1", id_no.lower())
    assert id_hash(b"k1", id_no) != id_hash(b"k2", id_no)


@pytest.mark.parametrize(("wire", "fen"), [(12.3, 1230), ("500", 50000), (0.01, 1), (Decimal("19.99"), 1999), (7, 700)])
def test_yuan_parse_exactly(wire: object, fen: int) -> None:
    assert yuan_to_fen(wire) == fen


@pytest.mark.parametrize("wire", [12.345, "abc", "NaN", "Infinity", True, None, [1]])
def test_yuan_refuses_what_is_not_two_decimals(wire: object) -> None:
    with pytest.raises(InvalidAmount):
        yuan_to_fen(wire)


def test_yuan_text_for_notices() -> None:
    assert yuan_text(50000) == "500"
    assert yuan_text(50001) == "500.01"
    assert yuan_text(1230) == "12.30"
    assert fen_to_yuan(1) == Decimal("0.01")


def test_logs_never_carry_an_id_number_or_phone_in_clear() -> None:
    id_no = make_id_no("64010219900101123")
    line = scrub(f"person {id_no} phone 13812341234 imported")
    assert id_no not in line and "13812341234" not in line
    assert "6401**********" in line and "138****1234" in line
