# The commands a newcomer and CI use. `make demo` and `make test` work on a fresh machine (README.md).
SHELL := /bin/bash
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python
YIBAO := $(VENV)/bin/yibao
UV_VERSION := 0.13.9

.PHONY: install haproxy browser demo test test-fast lint bench down migration clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Python packages from the committed lock file, then the pinned Kafka jars (Maven Central), then HAProxy.
install: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet
	$(YIBAO) fetch-kafka
	@$(MAKE) --no-print-directory haproxy
	@$(MAKE) --no-print-directory browser

# Debian's HAProxy, which `yibao up --replicas N` (N > 1) puts in front of the replicas. Installed only when
# missing, with apt-get, as root; otherwise a note and on: the default one-process federation does not need it.
haproxy:
	@if command -v haproxy >/dev/null 2>&1; then \
	  :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing haproxy (apt-get)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; } \
	  || echo "note: installing haproxy failed; only \`yibao up --replicas N\` (N > 1) needs it"; \
	else \
	  echo "note: haproxy is not installed (as root: apt-get install haproxy); only \`yibao up --replicas N\` (N > 1) needs it"; \
	fi

# Debian's headless Chromium and a CJK font, which the console's browser tests (tests/e2e/test_console.py) and
# `yibao screenshots` drive through Playwright (never Playwright's own browser download). Installed only when
# missing, with apt-get, as root; otherwise a note and on (the tests then skip, except under CI).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
	    && [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then \
	  :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium, chromium-driver, fonts-wqy-microhei (apt-get)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei >/dev/null; } \
	  || echo "note: installing chromium failed; only the console's browser tests and \`yibao screenshots\` need it"; \
	else \
	  echo "note: chromium is not installed (as root: apt-get install chromium chromium-driver fonts-wqy-microhei); only the console's browser tests and \`yibao screenshots\` need it"; \
	fi

# Quiet hours (22:00-06:00 Asia/Shanghai) would refuse the demo's transfer at night; the demo federation
# runs without them so the stories work at any hour. `yibao up` alone applies the default policy.
demo: install
	YIBAO_TRANSFER_QUIET_HOURS= $(YIBAO) up
	$(YIBAO) demo

# ruff, mypy --strict, and the layer rules (domain/ pure, service_layer/ without a web framework, no service
# importing another: tests/unit/test_structure.py).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services launcher tests
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/test_structure.py

# Unit and integration tests (in-process services, real databases), then the real federation (Kafka + services) on SQLite, and on PostgreSQL when
# YIBAO_TEST_POSTGRES_URL names a server (.ci/run starts one).
test: lint
	$(VENV)/bin/pytest -q tests

test-fast: install
	$(VENV)/bin/pytest -q tests/unit tests/contract tests/integration

bench: install
	$(YIBAO) bench transfers --rate 200 --duration 60

down:
	$(YIBAO) down

migration:
	$(PY) infra/new_migration.py $(SERVICE) "$(MSG)"

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
