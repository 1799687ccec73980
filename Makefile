# The commands the README promises. Each installs what it needs into .venv first:
# `make run` the server and the client SDK (client/, which the quickstart's traffic script
# uses), the others the development tools too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-stamp
DEV_STAMP := $(VENV)/.dev-stamp
# A development token so that the quickstart works by copy-paste; set your own in production.
export RANKTUNE_ADMIN_TOKEN ?= dev-admin-token-change-me
# `make run HOST=0.0.0.0 PORT=8001` passes them to `ranktune serve`; unset, serve reads
# RANKTUNE_HOST and RANKTUNE_PORT (default 127.0.0.1:8000).
HOST ?=
PORT ?=

.PHONY: install run test lint format bench clean chromium screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e . -e client
	touch $@

$(DEV_STAMP): pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]' -e client
	touch $@ $(RUN_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/ranktune db upgrade
	$(BIN)/ranktune serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test: $(DEV_STAMP) chromium
	$(BIN)/python -m pytest -q -n 2

# The dashboard's browser tests drive Debian's Chromium (Playwright never downloads one).
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The README's pictures: the browser tests write them into docs/img (look before committing).
screenshots: $(DEV_STAMP) chromium
	RANKTUNE_SCREENSHOT_DIR=docs/img $(BIN)/python -m pytest -q tests/browser -k screenshots

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
