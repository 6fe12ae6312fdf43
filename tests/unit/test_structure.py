"""The layers mean what their folders say (DESIGN.md "Layout"), checked on every module's imports, as
`make lint` runs it:
- `domain/` is pure: no database, web framework, Kafka or HTTP client (nor the project's modules that bring
  them: shared.db, shared.web, shared.kafka, shared.outbox, adapters, service layers, entrypoints);
- `service_layer/` knows no web framework: no FastAPI or Starlette, nor shared.web (refusals are
  shared.errors.ApiError) nor entrypoints;
- no service imports another service's package: they share only `shared/` (contracts, helpers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())

IO_LIBRARIES = ("sqlalchemy", "sqlmodel", "fastapi", "starlette", "aiokafka", "httpx", "asyncpg", "uvicorn")
WEB_LIBRARIES = ("fastapi", "starlette", "uvicorn")


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _modules(layer: str) -> list[Path]:
    return sorted(path for service in SERVICES for path in (ROOT / "services" / service / layer).rglob("*.py"))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _offending(paths: list[Path], forbidden: tuple[str, ...], forbidden_parts: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for name in imports_of(path):
            if _under(name, forbidden) or any(f".{part}" in f".{name}" for part in forbidden_parts):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_domain_is_pure() -> None:
    forbidden = (*IO_LIBRARIES, "shared.db", "shared.web", "shared.kafka", "shared.outbox", "shared.runtime",
                 "shared.idempotency", "shared.internal_http", "shared.http1")
    assert _offending(_modules("domain"), forbidden, (".adapters", ".service_layer", ".entrypoints")) == []


def test_service_layers_know_no_web_framework() -> None:
    forbidden = (*WEB_LIBRARIES, "shared.web", "shared.idempotency")
    assert _offending(_modules("service_layer"), forbidden, (".entrypoints",)) == []


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str) -> None:
    others = tuple(f"services.{other}" for other in SERVICES if other != service)
    paths = sorted((ROOT / "services" / service).rglob("*.py"))
    assert _offending(paths, others, ()) == []
