"""`table(Model)`: the SQLAlchemy `Table` of a SQLModel table class, typed (SQLModel does not declare
`__table__`, so every module reading it needed its own `type: ignore`)."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlmodel import SQLModel


def table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]
