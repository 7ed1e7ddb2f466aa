# Rillet developer entry points. `make test` and `make demo` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not ((3,11) <= sys.version_info[:2] <= (3,12)))'; then echo $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv redis-server test lint typecheck demo up bench clean

help:
	@echo "make test   - set up .venv, make sure redis-server exists, run the whole suite"
	@echo "make demo   - end-to-end demo against a project-owned Redis"
	@echo "make up     - Redis + pipeline + API in the foreground"
	@echo "make lint   - ruff check + ruff format --check; make typecheck - mypy --strict on features/, pipelines/ and serving/"

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "error: Python 3.11 or 3.12 is required (Bytewax 0.21 has no wheels for newer)"; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing redis-server with apt"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }; \
		else \
			echo "error: redis-server is not installed; install it (Debian/Ubuntu: sudo apt-get install redis-server) and rerun"; exit 1; \
		fi; \
	fi
	@command -v redis-server >/dev/null 2>&1 || { echo "error: redis-server still missing after apt-get"; exit 1; }

test: venv redis-server
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy --strict features pipelines serving

demo: venv redis-server
	$(BIN)/rillet demo

up: venv redis-server
	$(BIN)/rillet up

bench: venv redis-server
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/online.py
	$(BIN)/python bench/export.py

clean:
	rm -rf $(VENV) .rillet data .pytest_cache .mypy_cache .ruff_cache
