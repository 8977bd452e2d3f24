# `make run` starts the dashboard on http://127.0.0.1:8501; `make test` lints and runs every test; `make unit` runs
# the quick ones only (no browser, no test marked slow), for while you work.
# Both create .venv and install the requirements the first time, and again only when a requirements file changes.

VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: run test unit

# Tests run on two worker processes (pytest-xdist; `make test WORKERS=4` on a bigger machine). loadgroup keeps each
# file marked with an xdist_group on one worker (its costly module fixture is made once) and hands out the rest
# test by test, so the browser file runs on one worker while the other takes the rest.
WORKERS ?= 2
PYTEST := $(PYTHON) -m pytest -n $(WORKERS) --dist loadgroup

run: $(VENV)/.installed-run
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PYTEST)

unit: $(VENV)/.installed-dev
	$(PYTEST) -m "not slow and not browser"

$(PYTHON):
	python3 -m venv $(VENV)

# Stamp files: pip runs only when the requirements are newer than the last successful install.
# Headwatch itself is installed editable, so the `headwatch` command and `from headwatch import watch` work anywhere.
$(VENV)/.installed-run: requirements.txt pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed-run
