# hwbkpt — two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/hwbkpt/v1/*.proto)
PYTEST_ARGS ?=

.PHONY: all setup node-deps proto proto-check proto-image lint typecheck test test-fast demo bench soak native-tools clean

all: test

# Debian tools the native tests and the demo use (gcc, gdb, perf); skipped when present or not root.
native-tools:
	@missing=""; for t in gcc gdb perf; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && \
	    apt-get install -y -qq gcc gdb linux-perf >/dev/null || apt-get install -y -qq gcc gdb >/dev/null; \
	  else echo "note: missing$$missing (native tests will say so)"; fi; \
	fi

$(STAMP): requirements-dev.txt server/pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e clients/python -e server
	@# mypy cannot follow setuptools' editable finder; give it the package by its import name.
	mkdir -p $(VENV)/mypy && ln -sfn ../../server $(VENV)/mypy/hwbkptd
	touch $@

setup: $(STAMP) native-tools node-deps

# Node.js packages (the DAP test client, the Node client's gRPC) pinned by package-lock.json.
# Without node/npm the tests that need them fail and say so; as root they are installed.
NODE_STAMP := node_modules/.installed
node-deps: $(NODE_STAMP)
$(NODE_STAMP): package.json package-lock.json clients/node/package.json
	@if ! command -v npm >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing: nodejs npm"; apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; fi
	@if command -v npm >/dev/null; then \
	  npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "note: npm missing (the Node.js tests will say so)"; fi

# The protos as the Python client's wheel ships them (package data), so a consumer can
# generate stubs in any language without cloning the repository.
WHEEL_PROTO_DIR := clients/python/hwbkpt/proto/hwbkpt/v1

# Regenerate the committed stubs (and the wheel's copy of the protos).
proto: $(STAMP)
	PATH=$(BIN):$$PATH $(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=clients/python --grpc_python_out=clients/python \
	  --mypy_out=clients/python --mypy_grpc_out=clients/python $(PROTOS)
	mkdir -p $(WHEEL_PROTO_DIR) && cp $(PROTOS) $(WHEEL_PROTO_DIR)/

# The published descriptor set: every proto and its imports, as `buf build` writes it.
proto-image: $(STAMP)
	mkdir -p dist && $(BIN)/buf build -o dist/hwbkpt.binpb && echo "wrote dist/hwbkpt.binpb"

# Fail when the committed stubs differ from what the protos generate.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d); \
	PATH=$(BIN):$$PATH $(PY) -m grpc_tools.protoc -Iproto --python_out=$$tmp --grpc_python_out=$$tmp \
	  --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS) >/dev/null; \
	for f in $$tmp/hwbkpt/v1/*; do \
	  cmp -s $$f clients/python/hwbkpt/v1/$$(basename $$f) || { echo "stale stub: $$(basename $$f) (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; \
	for f in $(PROTOS); do \
	  cmp -s $$f $(WHEEL_PROTO_DIR)/$$(basename $$f) || { echo "stale wheel proto: $$(basename $$f) (run make proto)"; exit 1; }; \
	done; echo "proto stubs up to date"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	MYPYPATH=$(VENV)/mypy:clients/python $(BIN)/mypy -p hwbkptd -p hwbkpt -p demo -p bench

test: setup proto-check lint typecheck
	$(BIN)/pytest -m "not soak" $(PYTEST_ARGS)

# Only pytest (for the edit-test loop).
test-fast: $(STAMP)
	$(BIN)/pytest -x -q -m "not soak" $(PYTEST_ARGS)

demo: setup
	$(PY) -m demo

bench: setup
	$(PY) -m bench

soak: setup
	HWBKPT_SOAK=1 $(BIN)/pytest -m soak $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache node_modules
