# Two commands on a fresh machine: `make run` (the demo) and `make test` (lint + the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit servers idp bench chaos clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "asset-gateway needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The demo signs in through the development IdP when node is there; without it, it says so.
run: $(STAMP)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory idp || true; fi
	$(BIN)/asset-gateway demo

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy
	$(BIN)/asset-gateway policy check policies
	@for dir in policies/examples/*/; do [ -d "$$dir" ] && $(BIN)/asset-gateway policy check "$$dir" || exit 1; done
	VENV=$(VENV) scripts/hadolint.sh Dockerfile

servers:
	@scripts/ensure-packages.sh "make test" redis-server:redis-server redis-cli:redis-tools nginx:nginx \
		chromium:chromium node:nodejs npm:npm varnishd:varnish

# The development OpenID provider (panva's oidc-provider, pinned by tests/idp/package-lock.json).
IDP := tests/idp/node_modules/.package-lock.json
idp: $(IDP)
$(IDP): tests/idp/package.json tests/idp/package-lock.json
	@command -v npm >/dev/null || { echo "the sign-in tests and demo need Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	cd tests/idp && npm ci --no-audit --no-fund --loglevel=error || \
		{ echo "npm ci in tests/idp failed: the sign-in tests need oidc-provider from the npm registry"; exit 1; }

test: lint servers idp
	$(BIN)/pytest

# The gateway against the bare-aiohttp floor (and nginx against a static 204): docs/benchmarks.md.
bench: $(STAMP) servers
	@scripts/ensure-packages.sh "make bench" wrk:wrk taskset:util-linux
	$(BIN)/python -m bench.run

# The fault test for longer (CHAOS_SECONDS=120, CHAOS_READERS=6, CHAOS_IDS=8, CHAOS_CACHE_TTL=3,
# CHAOS_SEED): prints answers checked, wrong answers, lost writes and faults injected.
chaos: $(STAMP) servers
	$(BIN)/python -m tests.chaos

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis tests/idp/node_modules
