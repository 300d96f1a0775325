# The project's commands. Everything installs into .venv from uv.lock (the versions the tests
# ran with); nothing else is needed on the machine but Python 3.11: uv itself is installed
# into .tools/ from PyPI at the version pinned here (and in pyproject.toml's [tool.uv]).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-from-lock
UV_VERSION := 0.13.9
UV_HOME := .tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
LOCK_ARGS ?=
# The service packages, from the registry (shared/services.py). Deferred (`=`): expanded only in
# the recipes that use it, which run after .venv exists.
SERVICES = $(shell $(BIN)/python -m shared.services)
# Local tooling: the stack, in-process store, API documents (devstack) and the operator CLI.
TOOLING := devstack fleet
PYTEST_ARGS ?=

NODE_STAMP := clients/node_modules/.installed-from-lock

.PHONY: help install lock run demo test lint format compose-check clean node-tools browser audit bench wrk promtool

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet uv==$(UV_VERSION)

# Every group (runtime, local, ops, dev), exactly the lock's versions; refuses a lock that no
# longer matches pyproject.toml (then: make lock). Again only when either is newer than the stamp.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-groups --python $(PYTHON)
	@touch $(STAMP)

install: $(STAMP) node-tools ## create .venv and install the project with its dev tools

# After editing the dependencies in pyproject.toml. Keeps every other locked version;
# `make lock LOCK_ARGS=--upgrade` (or --upgrade-package NAME) moves them to the newest allowed.
lock: $(UV) ## update uv.lock from pyproject.toml (the one lock of every install and image)
	$(UV) lock --python $(PYTHON) $(LOCK_ARGS)

# GraphiQL's scripts (served by the gateway, no CDN), newman and the AsyncAPI parser, from
# clients/package-lock.json.
# Without npm the gateway's GraphiQL page loads its scripts from the CDN.
node-tools: $(NODE_STAMP) ## npm ci in clients/ (GraphiQL assets, newman, AsyncAPI parser)
$(NODE_STAMP): clients/package.json clients/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix clients --no-audit --no-fund --loglevel=error && touch $@ || \
		echo "npm ci failed: GraphiQL loads its scripts from the CDN; newman tests will fail"; \
	else \
		echo "npm not found: GraphiQL loads its scripts from the CDN; newman tests are skipped"; \
	fi

# Debian's chromium for the GraphiQL browser test (Playwright drives it; it downloads no browser).
browser: ## install Debian chromium for the GraphiQL browser test (root, apt)
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	fi

# Debian's wrk, the load generator of `make bench`.
wrk: ## install Debian wrk for make bench (root, apt)
	@if ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq wrk >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; \
	fi

# Debian's prometheus package for its promtool: the alert rules' checks and unit tests
# (tests/unit/test_observability.py). Its server is not started (nor wanted).
promtool: ## install Debian's promtool for the alert rule tests (root, apt)
	@if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; \
	fi

# Starts its own fleet on free ports (loopback), about a minute; not part of test. Prints a table,
# writes bench/results.json. BENCH_DURATION, BENCH_CONNECTIONS, BENCH_PYSPY: see bench/run.py.
bench: $(STAMP) wrk ## measure the fleet with wrk (gateway vs bare FastAPI, memory, start time)
	$(BIN)/python -m bench.run

# ARGS go to the launcher: make run ARGS="--free-ports" (see python -m devstack --help).
run: $(STAMP) node-tools ## start the whole fleet on embedded parts (Ctrl-C stops it; ARGS=...)
	$(BIN)/python -m devstack $(ARGS)

# Against a running fleet (make run in another terminal): users with orders, notifications and
# recommendations, a verified admin; prints logins, tokens and `export FLEET_TOKEN=...`
# (docs/demo.md). ARGS go to `fleet demo`: make demo ARGS="--url http://127.0.0.1:4000".
demo: $(STAMP) ## create demo users, orders and an admin on the running fleet (ARGS=...)
	$(BIN)/python -m fleet demo $(ARGS)

test: $(STAMP) node-tools browser promtool ## run every test: compose check, unit, integration, end to end, fault injection, security
	@$(MAKE) --no-print-directory compose-check
	$(BIN)/pytest -q tests/unit tests/integration tests/e2e tests/fault tests/security $(PYTEST_ARGS)

# Needs PyPI's advisory data (network); says so plainly when it could check nothing. Not in test.
audit: $(STAMP) ## audit the installed dependencies for known vulnerabilities (pip-audit)
	$(BIN)/python scripts/audit.py

lint: $(STAMP) ## ruff (format and lint) and mypy
	$(BIN)/ruff format --check shared $(TOOLING) tests $(SERVICES)
	$(BIN)/ruff check shared $(TOOLING) tests $(SERVICES)
	$(BIN)/mypy shared $(TOOLING) $(SERVICES)

format: $(STAMP) ## rewrite the code in the house format
	$(BIN)/ruff format shared $(TOOLING) tests $(SERVICES)
	$(BIN)/ruff check --fix shared $(TOOLING) tests $(SERVICES)

# Offline, no Docker: the Compose Specification's JSON schema (deploy/compose-spec, committed
# with its source named) and the house rules (healthchecks, env files, build targets, scalable
# services, start order, volumes, one network), by devstack/compose_check.py.
compose-check: $(STAMP) ## validate docker-compose.yml (Compose Specification schema, house rules)
	$(BIN)/python -m devstack.compose_check docker-compose.yml

clean: ## remove caches and the local mail folder (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache var
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
