"""`Prepared`'s converter of a flat array bind (shared/db/statements.py `_bind_processor`) gives the driver what
SQLAlchemy's own would, for every kind of item a transaction's deferred rows carry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import asyncpg
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime  # UTCDateTime: every timestamp column here

from shared.clock import SHANGHAI
from shared.db.statements import _bind_processor

DIALECT = asyncpg.dialect()  # type: ignore[no-untyped-call]
AT = datetime(2026, 12, 3, 18, 30, tzinfo=SHANGHAI)


def _both(type_: Any, value: Any) -> tuple[Any, Any]:
    array = postgresql.ARRAY(type_)
    generic = array.dialect_impl(DIALECT).bind_processor(DIALECT)
    lean = _bind_processor(array, DIALECT)
    assert generic is not None and lean is not None
    return lean(value), generic(value)


@pytest.mark.parametrize(("type_", "value"), [
    (sa.BigInteger(), [1, 2**40, None]),
    (AutoString(length=40), ["a", None, "c"]),
    (sa.Boolean(), [True, False, None]),
    (sa.LargeBinary(), [b"\x00", None]),
    (sa.BigInteger(), []),
    (sa.BigInteger(), None),
    (sa.BigInteger(), [[1, 2], [3, 4]]),  # nested: SQLAlchemy's own converter
    (sa.BigInteger(), (5, 6)),  # not a list: SQLAlchemy's own converter
])
def test_a_flat_array_reaches_the_driver_as_sqlalchemy_sends_it(type_: Any, value: Any) -> None:
    lean, generic = _both(type_, value)
    assert lean == generic


def test_aware_datetimes_are_converted_item_by_item_as_sqlalchemy_does() -> None:
    lean, generic = _both(UTCDateTime(), [AT, None])
    assert lean == generic == [AT.astimezone(UTC), None]
    assert lean[0].tzinfo == UTC
    with pytest.raises(ValueError, match="timezone"):
        _both(UTCDateTime(), [datetime(2026, 12, 3, 18, 30)])  # naive: refused, as before


def test_a_scalar_bind_keeps_sqlalchemys_converter() -> None:
    assert _bind_processor(sa.BigInteger(), DIALECT) is None
    convert = _bind_processor(UTCDateTime(), DIALECT)
    assert convert is not None and convert(AT).tzinfo == UTC
