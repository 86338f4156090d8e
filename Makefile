# The two commands of the README: `make demo` and `make test` (and `make demo-nodes`). All set up .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# uv, pinned with its hashes in scripts/uv.txt, in a venv of its own: it installs .venv from uv.lock.
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
STALE_LOCK := uv.lock does not match pyproject.toml: run '$(UV) lock' to add what changed (other versions stay), or 'make upgrade' to move everything to the newest releases.

.PHONY: demo demo-nodes test check bench setup js lock-check upgrade

## Install exactly what uv.lock says (every extra, the dev and peers groups) into .venv
setup: $(VENV)/.installed

$(UV): scripts/uv.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes -r scripts/uv.txt
	touch $@

$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON) --quiet
	touch $@

## Run the demo: the chat on one node, memory://; it prints what to open (http://127.0.0.1:8000/)
demo: setup
	@echo "Starting the chat on memory://; open the URLs printed below. Ctrl-C stops it."
	$(BIN)/livestate demo

## The same on two supervised nodes sharing an embedded Valkey, with a status page that can
## kill a node: watch a page reconnect and catch up
demo-nodes: setup
	@echo "Starting the chat on two nodes; open the URLs printed below. Ctrl-C stops it."
	$(BIN)/livestate demo --nodes 2 --kill-control

## Run every check: format, lint, types, then the whole test suite (browser tests included)
test: setup
	scripts/install-chromium
	scripts/install-redis-server
	scripts/install-postgresql
	$(MAKE) check
	$(MAKE) js
	$(BIN)/pytest

## The JS/TS client (js/) and the React example: install, type-check and build, unit tests
js:
	cd js && npm ci --no-audit --no-fund && npx tsc -p tsconfig.json && node scripts/copy-client.mjs --check && npm test
	cd examples/react_counter && npm ci --no-audit --no-fund && npm run build

## Format, lint and type checks only (and that the lock matches pyproject.toml)
check: setup lock-check
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

lock-check: $(UV)
	@$(UV) lock --check --offline --quiet || { echo "$(STALE_LOCK)" >&2; exit 1; }

## Move the lock (and uv itself) to today's newest releases, then run every test on them
upgrade: $(UV)
	echo "uv" | $(UV) pip compile --generate-hashes --upgrade --quiet - -o scripts/uv.txt
	$(UV) lock --upgrade
	$(MAKE) test

## The benchmarks, each printing a table and one JSON line
bench: setup
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/redis_path.py
	$(BIN)/python benchmarks/pyview_fanout.py
	$(BIN)/python benchmarks/presence.py
