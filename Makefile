# fieldstream: the two commands of the README are `make demo` and `make test`.
# Everything they need is installed here, idempotently: Debian packages
# (PostgreSQL), Apache Kafka from Maven Central, the schema registry (built
# with Go), and the Python virtualenv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FS := $(BIN)/fieldstream
STAMP := $(VENV)/.installed-stamp

.PHONY: help install stack stack-down demo test unit integration bench reliability clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(STAMP)  ## create the virtualenv and install fieldstream with its test tools

stack: install  ## install (if missing) and start Kafka, the schema registry and PostgreSQL
	$(FS) stack up

stack-down:  ## stop the local stack
	$(FS) stack down

demo: stack  ## the main job: a simulated fleet through two workers into every sink
	$(FS) demo

test: stack  ## every test: unit, then integration against the local stack
	$(BIN)/python -m pytest -q tests/unit tests/integration

unit: install  ## unit tests only (no services)
	$(BIN)/python -m pytest -q tests/unit

integration: stack  ## integration tests only
	$(BIN)/python -m pytest -q tests/integration

.venv-quix/bin/python:
	$(PYTHON) -m venv .venv-quix
	.venv-quix/bin/pip install -q quixstreams fastavro

bench: stack .venv-quix/bin/python  ## benchmarks (long; results appended to docs/BENCHMARKS.md)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/run_all.py --record

reliability: stack  ## the full reliability run (long; results in docs/RELIABILITY.md)
	$(BIN)/python bench/reliability.py

clean: stack-down  ## stop the stack and delete its data (keeps downloaded artifacts)
	rm -rf .stack/postgres .stack/kafka .stack/registry .stack/lake .stack/worker .stack/logs .stack/run
