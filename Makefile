# The two commands of the README: `make demo` and `make test` (and `make demo-nodes`). All set up .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo demo-nodes test check bench setup js

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[redis,pyview,test]'
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

## Format, lint and type checks only
check: setup
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

## The benchmarks, each printing a table and one JSON line
bench: setup
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/redis_path.py
	$(BIN)/python benchmarks/pyview_fanout.py
	$(BIN)/python benchmarks/presence.py
