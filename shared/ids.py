"""Resident ID numbers (GB 11643), masking and keyed hashing of personal data.

An ID number is validated once at the edge, then only its keyed hash (HMAC-SHA256 with the federation's
id-hash key) and its masked form are stored or sent; the clear number never reaches a log line."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"  # index: sum mod 11 -> check character, i.e. (12 - s mod 11) mod 11
_ID_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$", re.ASCII)
_PHONE_SHAPE = re.compile(r"^1[0-9]{10}$")


class InvalidIdNo(ValueError):
    """Not an 18-character resident ID with a valid GB 11643 check digit."""


def check_digit(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def normalize_id_no(id_no: str) -> str:
    """Return the canonical (upper-case X) ID number, or raise InvalidIdNo."""
    candidate = id_no.strip().upper() if isinstance(id_no, str) else ""
    if not _ID_SHAPE.match(candidate) or check_digit(candidate[:17]) != candidate[17]:
        raise InvalidIdNo("resident ID number fails the GB 11643 check")
    return candidate


def is_valid_id_no(id_no: str) -> bool:
    try:
        normalize_id_no(id_no)
    except InvalidIdNo:
        return False
    return True


def make_id_no(first17: str) -> str:
    """Complete 17 digits with their check digit (demo data and tests)."""
    return first17 + check_digit(first17)


def birth_date_of(id_no: str) -> date:
    """GB 11643 digits 7-14 are the date of birth (yyyyMMdd). Raises InvalidIdNo for an impossible date."""
    canonical = normalize_id_no(id_no)
    try:
        return date(int(canonical[6:10]), int(canonical[10:12]), int(canonical[12:14]))
    except ValueError as exc:
        raise InvalidIdNo("the birth date inside the ID number is not a date") from exc


def gender_of(id_no: str) -> str:
    """GB 11643 digit 17 is odd for men, even for women; GB/T 2261.1 codes: "1" male, "2" female."""
    return "1" if int(normalize_id_no(id_no)[16]) % 2 else "2"


def age_on(birth: date, today: date) -> int:
    """Whole years completed on `today`."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def mask_id_no(id_no: str) -> str:
    """`6401**********1234`: region prefix and last four only."""
    return id_no[:4] + "*" * (len(id_no) - 8) + id_no[-4:]


def mask_phone(phone: str) -> str:
    """`138****1234`."""
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def is_valid_phone(phone: str) -> bool:
    return bool(_PHONE_SHAPE.match(phone))


def mask_name(name: str) -> str:
    """`张*` / `李*山`: the family name and, for long names, the last character."""
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 hex of a personal datum; equal inputs give equal hashes only to holders of the key."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def id_hash(key: bytes, id_no: str) -> str:
    return keyed_hash(key, "id:" + normalize_id_no(id_no))


def card_hash(key: bytes, card_no: str) -> str:
    """Social-security card numbers (mdtrt_cert_type 03) are kept, at the node and in the hub directory, only as
    this keyed hash; the gateway hashes what the till read to find the card's holder."""
    return keyed_hash(key, "card:" + card_no.strip())


def name_hash(key: bytes, name: str) -> str:
    return keyed_hash(key, "name:" + name.strip())
