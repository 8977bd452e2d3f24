# `make run` starts the dashboard on http://127.0.0.1:8501; `make test` lints and runs every test.
# Both create .venv and install the requirements the first time, and again only when a requirements file changes.

VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: run test

run: $(VENV)/.installed-run
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PYTHON) -m pytest

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
