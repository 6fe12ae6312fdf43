# The commands a newcomer and CI use. `make demo` and `make test` work on a fresh machine (README.md).
SHELL := /bin/bash
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python
YIBAO := $(VENV)/bin/yibao
UV_VERSION := 0.13.9

.PHONY: install demo test test-fast lint bench down migration clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Python packages from the committed lock file, then the pinned Kafka jars (Maven Central).
install: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet
	$(YIBAO) fetch-kafka

# Quiet hours (22:00-06:00 Asia/Shanghai) would refuse the demo's transfer at night; the demo federation
# runs without them so the stories work at any hour. `yibao up` alone applies the default policy.
demo: install
	YIBAO_TRANSFER_QUIET_HOURS= $(YIBAO) up
	$(YIBAO) demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services launcher

# Unit and contract tests, then the real federation (Kafka + services) on SQLite, and on PostgreSQL when
# YIBAO_TEST_POSTGRES_URL names a server (.ci/run starts one).
test: lint
	$(VENV)/bin/pytest -q tests

test-fast: install
	$(VENV)/bin/pytest -q tests/unit tests/contract

bench: install
	$(YIBAO) bench transfers --rate 200 --duration 60

down:
	$(YIBAO) down

migration:
	$(PY) infra/new_migration.py $(SERVICE) "$(MSG)"

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
