# The two commands of the README: `make run` (set up, then run the pipeline) and
# `make test` (set up, then run the tests). Everything installs into .venv, pinned.
# bash, for its `time` keyword (dash would need a separate /usr/bin/time)
SHELL := bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
# DVC runs stage commands through the shell: put the venv first so `python` is ours.
export PATH := $(BIN):$(PATH)

# `make server`: the team tracking server (README, "A tracking server for a team").
SERVER_DIR ?= .server
HOST ?= 127.0.0.1
PORT ?= 5000
PG_PORT ?= 5433
PG_BIN ?= /usr/lib/postgresql/15/bin
WORKERS ?= 2
# TLS: CERT= and KEY= (PEM) or, unset, a self-signed pair made at first start
CERT ?=
KEY ?=
SERVER_ENV = SERVER_DIR=$(SERVER_DIR) HOST=$(HOST) PORT=$(PORT) PG_PORT=$(PG_PORT) \
	PG_BIN=$(PG_BIN) WORKERS=$(WORKERS) MLFLOW=$(BIN)/mlflow CERT=$(CERT) KEY=$(KEY)

.PHONY: setup setup-ray run test test-fast ui ui-check bench bench-parallel lint clean lock server server-stop server-user

setup: $(VENV)/.installed

# Every transitive dependency from requirements.lock, each pinned with its hashes, so that
# the committed report is reproducible to the byte; torch, pinned in pyproject.toml, is
# installed on its own (its CPU and CUDA wheels differ by platform, so it has no hash).
# uv installs the lock's ~200 wheels in seconds where pip takes ~80 s (same pins, same
# hashes); where uv cannot be had, pip does it. uv compiles the bytecode as pip does
# (--compile-bytecode, ~14 s on 2 cores): without it, under PYTHONDONTWRITEBYTECODE=1 (set
# on the development machine) every stage compiled MLflow, pandas and SQLAlchemy from
# source again, 8.6 s of imports against 3.9 s.
UV_VERSION = 0.13.9
LOCK_INSTALL = $(BIN)/python -m pip install -q "uv==$(UV_VERSION)" && $(BIN)/uv pip install -q \
	--compile-bytecode --python $(BIN)/python --require-hashes --no-deps -r $(1) \
	|| $(BIN)/python -m pip install -q --require-hashes --no-deps -r $(1)

# torch by uv as well where uv installed the lock (10 s -> 2 s), handed pip's find-links:
# uv does not read pip's configuration, where this machine's CPU wheel of torch is found.
TORCH = $$(grep -o 'torch==[0-9.]*' pyproject.toml)
FIND_LINKS = $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(call LOCK_INSTALL,requirements.lock)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --no-deps \
		$(if $(FIND_LINKS),--find-links $(FIND_LINKS)) "$(TORCH)" \
		|| $(BIN)/python -m pip install -q --no-deps "$(TORCH)"
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

# Ray (`execution.cluster: ray`, docs/scaling.md) and its dependencies, pinned with their
# hashes in requirements-ray.lock (requirements.lock's pins plus the `ray` extra's).
setup-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(VENV)/.installed requirements-ray.lock
	$(call LOCK_INSTALL,requirements-ray.lock)
	$(BIN)/python -m pip check
	touch $@

LOCK = .lock-venv/bin/pip-compile -q --generate-hashes --strip-extras --unsafe-package torch \
	--no-emit-index-url --no-emit-find-links --extra dev

lock:  ## refresh requirements.lock (and -ray.lock) after a change of pyproject.toml's dependencies
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q pip-tools==7.6.2
	$(LOCK) -o requirements.lock pyproject.toml
	cp requirements.lock requirements-ray.lock  # the same pins for what both hold
	$(LOCK) --extra ray -o requirements-ray.lock pyproject.toml

run: setup  ## set up and run the default sweeps: dvc repro, MLflow in ./mlflow.db
	time dvc repro
	@echo "Report: reports/report.md   MLflow UI: make ui"

test: setup  ## set up and run the tests (the whole suite, as CI does)
	$(BIN)/python -m pytest

test-fast: setup  ## the tests without the slow tier (dvc repro, servers, clusters)
	$(BIN)/python -m pytest -m "not slow"

ui: setup  ## the MLflow UI on http://127.0.0.1:5000 (runs of every sweep)
	$(BIN)/bnmodels links
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# Each sweep's landing view, rendered by headless Chromium (Debian's `chromium`) from a
# tiny store served by `mlflow ui`; screenshot in $(UI_SHOT). 1.5-2.5 min on 2 cores.
UI_SHOT ?= docs/ui-landing.png
ui-check: setup  ## check the MLflow landing views in a real browser
	$(BIN)/python scripts/ui_check.py --out $(UI_SHOT)

server: setup  ## PostgreSQL + mlflow server on https://$(HOST):$(PORT), with users; state in $(SERVER_DIR)
	$(SERVER_ENV) bash scripts/server.sh start

server-user:  ## a user of the server: NAME=... ROLE=reader|editor [EXPERIMENT=bnmodels/...]
	$(SERVER_ENV) bash scripts/server.sh user "$(NAME)" "$(ROLE)" $(if $(EXPERIMENT),"$(EXPERIMENT)")

server-stop:  ## stop both
	$(SERVER_ENV) bash scripts/server.sh stop

bench: setup  ## engines compared on the same mixed sweep (prints run-steps/s and ratio)
	PYTHONPATH=. $(BIN)/python benchmarks/engines.py

bench-parallel: setup  ## one sweep on 1 and 2 worker processes (prints the ratio)
	PYTHONPATH=. $(BIN)/python benchmarks/parallel.py | tee benchmarks/results/parallel.txt

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:  ## remove generated state (keeps reports/, which is committed)
	rm -rf runs data mlflow.db mlartifacts .dvc/cache .dvc/tmp
