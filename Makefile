# Atlas Review: `make run` for the demo, `make test` for the suite.
# PYTHON may be given (make run PYTHON=/usr/bin/python3.13); otherwise the first 3.12+ found.
SHELL := /bin/bash
VENV ?= .venv
PORT ?= 8000
SIM_PORT ?= 8765
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test

PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 $$(command -v pyenv >/dev/null 2>&1 && for v in $$(pyenv versions --bare 2>/dev/null | sort -rV); do echo "$$(pyenv prefix $$v 2>/dev/null)/bin/python3"; done) python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then command -v $$p; break; fi; done)

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format install demo clean check-python

check-python:
	@if [ -z "$(PYTHON)" ]; then echo "Atlas Review needs Python 3.12 or newer (Django 6). Install one, or run: make $(MAKECMDGOALS) PYTHON=/path/to/python3.12+" >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || { echo "$(PYTHON) is older than 3.12; Django 6 needs 3.12+. Pass PYTHON=/path/to/python3.12+" >&2; exit 1; }

$(STAMP): pyproject.toml | check-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# The demo: SQLite, no broker (tasks run inline), the Atlas simulator on SIM_PORT.
DEMO_ENV := DEBUG=True ATLAS_BASE_URL=http://127.0.0.1:$(SIM_PORT)/v3/verification \
	ATLAS_DOCSTREAM_URL=http://127.0.0.1:$(SIM_PORT)/v1/docstream PUBLIC_BASE_URL=http://127.0.0.1:$(PORT) \
	ATLAS_CALLBACK_CLIENT_ID=demo-atlas-callback ATLAS_CALLBACK_CLIENT_SECRET=demo-callback-secret-2026

run: install
	$(DEMO_ENV) $(PY) manage.py migrate --noinput
	$(DEMO_ENV) $(PY) manage.py demo --simulator-port $(SIM_PORT) --port $(PORT)

test: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
