"""Fresh people for each test, so tests sharing one federation never see each other's money."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from launcher.client import face_image_b64
from shared.ids import make_id_no

_counter = itertools.count(1)
_run = random.Random().randrange(100, 900)
_SURNAMES = "王李张刘陈杨赵黄周吴"


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

    def import_body(self) -> dict[str, Any]:
        return {"id_no": self.id_no, "name": self.name, "phone": self.phone, "insutype": self.insutype,
                "pooling_admdvs": self.pooling_admdvs, "personal_account_fen": self.personal_account_fen,
                "password": "pass-" + self.id_no[-6:], "face_image_b64": face_image_b64(self.face_label)}


def new_person(pooling_admdvs: str, *, employee: bool = True, personal_account_fen: int = 1_000_000) -> Person:
    n = next(_counter)
    year = 1950 + (n * 7 + _run) % 50
    first17 = f"{pooling_admdvs}{year}{(n % 12) + 1:02d}{(n % 28) + 1:02d}{(_run + n) % 1000:03d}"
    id_no = make_id_no(first17)
    name = _SURNAMES[n % len(_SURNAMES)] + "测试" + "一二三四五六七八九十"[n % 10]
    return Person(id_no=id_no, name=name, admdvs=pooling_admdvs[:2] + "0000", pooling_admdvs=pooling_admdvs,
                  insutype="310" if employee else "390", personal_account_fen=personal_account_fen if employee else 0,
                  phone=f"138{n % 10**8:08d}", face_label=f"{id_no}-face")
