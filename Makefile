# Conversa: `make run` starts the whole product; `make test` runs every check and the test suite.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# pip on these machines warns about every unused local index; keep real errors, drop that noise.
PIP_QUIET := grep -v "is ignored: it is neither a file nor a directory" || true

# The test suite runs against the real PostgreSQL and Redis of every project machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
CHROMIUM := /usr/bin/chromium
# The deployment test runs config/deploy/nginx.conf in front of the web process (Debian's nginx).
NGINX := /usr/sbin/nginx

.PHONY: help run test lint migrate demo clean

help:
	@echo "make run   - set up and start Conversa (web + WebSockets, worker, beat) with demo data"
	@echo "make test  - install test dependencies, then ruff, Django checks and the whole test suite"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt 2> >($(PIP_QUIET) >&2)
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt 2> >($(PIP_QUIET) >&2)
	touch $(VENV)/.installed $@

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null

$(NGINX):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx > /dev/null

run: $(VENV)/.installed
	$(BIN)/python -m config.launcher

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.installed-dev $(CHROMIUM) $(NGINX) lint
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python manage.py check --fail-level WARNING
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python manage.py makemigrations --check --dry-run
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
