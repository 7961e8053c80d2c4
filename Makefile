# callkeeper: the two set-up commands are `make start` (run the app) and `make test` (run the checks).
# `make prepare` prepares everything `make start` needs except Azure Functions Core Tools, and starts Azurite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
AZURITE_DIR := .azurite

.PHONY: prepare start stop test lint typecheck pytest infra-check bench fleet soak mutation clean

# --- dependencies, installed from the project's own files -------------------------------------
# The project itself is installed editable (no dependencies of its own beyond requirements.txt): the `callkeeper`
# command, and `python -m shared` from any folder.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --editable . >$(VENV)/install-project.log 2>&1 || { cat $(VENV)/install-project.log; exit 1; }
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# checkov pins many packages of its own, so it lives in a virtual environment apart from the app's.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

# mutmut, for `make mutation` only, in the same virtual environment (the unit tests need the app's packages).
$(VENV)/.mutation-installed: $(VENV)/.installed requirements-mutation.txt
	$(PY) -m pip install --quiet -r requirements-mutation.txt
	touch $@

local.settings.json:
	cp local.settings.sample.json local.settings.json

# --- run the app locally ----------------------------------------------------------------------
# Everything but the Functions host: .venv, node_modules, local.settings.json, and Azurite running.
prepare: $(VENV)/.installed node_modules/.installed local.settings.json
	@bash scripts/azurite.sh start $(AZURITE_DIR)
	@echo "Prepared, in $$PWD:"
	@echo "  .venv/                Python with the app's and the tests' packages, and the callkeeper command (.venv/bin/callkeeper)"
	@echo "  node_modules/         Azurite, from package.json"
	@echo "  local.settings.json   the app's settings (copied from local.settings.sample.json if it was missing)"
	@echo "  Azurite               $$(bash scripts/azurite.sh where $(AZURITE_DIR))"

start: prepare
	@command -v func >/dev/null 2>&1 || { \
	  echo ""; \
	  echo "Azure Functions Core Tools v4 ('func') is not installed, so the app itself is not running."; \
	  echo "  Without it: README.md, section 'Local walkthrough', runs the whole loop with the command line"; \
	  echo "  (.venv/bin/callkeeper) in place of the HTTP API and the timer."; \
	  echo "  To run the app: install Core Tools (https://learn.microsoft.com/azure/azure-functions/functions-run-local,"; \
	  echo "  e.g. 'npm install --global azure-functions-core-tools@4'), then 'make start' again."; \
	  exit 1; }
	. $(VENV)/bin/activate && func start

stop:
	@bash scripts/azurite.sh stop $(AZURITE_DIR)

# --- checks (what CI runs) --------------------------------------------------------------------
test: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared tests/fakes.py tests/contract
	$(CHECKOV_VENV)/bin/python scripts/check_infra.py
	$(PY) -m pytest --cov=shared --cov-report=term-missing:skip-covered --cov-fail-under=85

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy shared tests/fakes.py tests/contract

infra-check: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/python scripts/check_infra.py

pytest: $(VENV)/.installed node_modules/.installed
	$(PY) -m pytest

# The unit and template tests alone, and the storage contract suite on its in-memory half: no Azurite, no
# stand-ins, no network (tests/unit/conftest.py refuses them), in seconds. For the edit-and-test loop; `make test`
# stays the full check.
.PHONY: test-fast
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit tests/infra tests/contract -m "not integration"

# The keep-alive benchmark (docs/performance.md): N=10,000 calls, 3 paired runs; it starts its own Azurite
# and Graph stand-in. Pass options through ARGS, e.g. `make bench ARGS="--calls 1000 --runs 1"`.
bench: $(VENV)/.installed node_modules/.installed
	$(PY) benchmarks/bench.py $(ARGS)

# The fleet simulation (docs/scaling.md): fanned-out work items in processes of their own against a Graph stand-in
# that throttles each tenant, with KEEPALIVE_TENANT_RATE's shares and then with the budget ignored.
# Options through ARGS, e.g. `make fleet ARGS="--calls 10000 --rate 400"`.
fleet: $(VENV)/.installed node_modules/.installed
	$(PY) benchmarks/fleet.py $(ARGS)

# The soak (docs/reliability.md): a simulated day, 144 ticks over ~1,000 calls, with transient faults and a
# storage outage; it starts its own Azurite and stand-ins. Options through ARGS, e.g. `make soak ARGS="--ticks 24"`.
soak: $(VENV)/.installed node_modules/.installed
	$(PY) scripts/soak.py $(ARGS)

# Mutation testing (docs/mutation.md), apart from `make test`: mutmut mutates the app's pure rules (the files
# and functions named in pyproject.toml, [tool.mutmut] and [tool.callkeeper.mutation]), runs the unit suite against
# each mutant, prints the killed share per file and the surviving mutants, and fails below the threshold there.
# A few minutes on 2 cores; no Azurite. Options through ARGS, e.g. `make mutation ARGS="--report-only"`.
mutation: $(VENV)/.mutation-installed
	$(PY) scripts/mutation.py $(ARGS)

clean:
	-@bash scripts/azurite.sh stop $(AZURITE_DIR)
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules $(AZURITE_DIR) .standins .hypothesis .pytest_cache .mypy_cache .ruff_cache \
	  .coverage callkeeper.egg-info mutants
