# The two set-up commands (README): `make demo` runs the pipeline, `make test` runs the tests.
# Both build .venv from scratch when it is missing or when the pins changed.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
PIP    := $(VENV)/bin/pip
# The UI tests drive Debian's chromium through its matching chromedriver (installed once, with apt).
CHROMEDRIVER := /usr/bin/chromedriver
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: demo airflow test test-fast lint constraints clean-home help

help:
	@echo "make demo       - run the pipeline end to end through Airflow on embedded defaults"
	@echo "                  (DEMO_FLAGS=--from-export: e621 starts from its database export, not the API)"
	@echo "make airflow    - Airflow standalone with the DAGs unpaused, UI on http://localhost:8080"
	@echo "make test       - run the whole test suite"
	@echo "make test-fast  - run the tests not marked slow"
	@echo "make lint       - ruff"
	@echo "make constraints- re-freeze constraints.txt from the current green .venv"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -c constraints.txt -e ".[all]"
	$(VENV)/bin/pony quality docs-assets   # Data Docs' scripts and styles, served locally (offline clusters)
	@touch $(STAMP)

demo: $(STAMP)
	PYTHONPATH=plugins $(VENV)/bin/python -m pony_airflow.demo $(DEMO_FLAGS)

airflow: $(STAMP)
	./scripts/airflow-standalone

$(CHROMEDRIVER):
	@echo "installing Debian's chromium and chromium-driver for the browser test (tests/airflow/test_ui_plugin.py)"
	$(APT) install -y -qq --no-install-recommends chromium chromium-driver \
	  || ($(APT) update -qq && $(APT) install -y -qq --no-install-recommends chromium chromium-driver)

test: $(STAMP) $(CHROMEDRIVER)
	./scripts/run-tests

test-fast: $(STAMP) $(CHROMEDRIVER)
	./scripts/run-tests -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check pony_tasks dags plugins tests benchmarks
	$(VENV)/bin/ruff check --select AIR --preview dags plugins  # Airflow rules still in preview (AIR2xx)

constraints: $(STAMP)
	$(PIP) freeze --exclude-editable | grep -v '^pony-pipeline' > constraints.txt

clean-home:
	-$(VENV)/bin/pony db stop
	rm -rf .pony
