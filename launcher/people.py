"""Synthetic insured people for tests and the bench: valid GB 11643 IDs, unique within a run, each with an
enrolled face, so that runs sharing one federation never see each other's money."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from launcher.client import face_image_b64
from shared.ids import make_id_no

_counter = itertools.count(random.SystemRandom().randrange(10_000_000))
_SURNAMES = "王李张刘陈杨赵黄周吴"


def _birth_and_sequence(k: int) -> str:
    """Birth date (1940-1999) and 3-digit sequence from one counter: distinct for 20 million values, and a
    random start keeps separate runs against one federation apart."""
    seq = k % 1000
    day = (k // 1000) % 28 + 1
    month = (k // 28_000) % 12 + 1
    year = 1940 + (k // 336_000) % 60
    return f"{year}{month:02d}{day:02d}{seq:03d}"


@dataclass
class Person:
    id_no: str
    name: str
    admdvs: str
    pooling_admdvs: str
    insutype: str
    personal_account_fen: int
    phone: str = field(default="")
    face_label: str = ""

    @property
    def password(self) -> str:
        return "pass-" + self.id_no[-6:]

    def import_body(self, with_password: bool = True) -> dict[str, Any]:
        """The admin import entry; the bench leaves the password out (hashing it is deliberately slow)."""
        body = {"id_no": self.id_no, "name": self.name, "phone": self.phone, "insutype": self.insutype,
                "pooling_admdvs": self.pooling_admdvs, "personal_account_fen": self.personal_account_fen,
                "face_image_b64": face_image_b64(self.face_label)}
        if with_password:
            body["password"] = self.password
        return body


def new_person(pooling_admdvs: str, *, employee: bool = True, personal_account_fen: int = 1_000_000) -> Person:
    n = next(_counter)
    id_no = make_id_no(pooling_admdvs + _birth_and_sequence(n))
    name = _SURNAMES[n % len(_SURNAMES)] + "测试" + "一二三四五六七八九十"[n % 10]
    return Person(id_no=id_no, name=name, admdvs=pooling_admdvs[:2] + "0000", pooling_admdvs=pooling_admdvs,
                  insutype="310" if employee else "390", personal_account_fen=personal_account_fen if employee else 0,
                  phone=f"138{n % 10**8:08d}", face_label=f"{id_no}-face")
