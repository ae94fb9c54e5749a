# Everything a newcomer needs, from a fresh clone: `make demo`, `make test`.
# The virtualenv is (re)built from pyproject.toml whenever that file is newer than the stamp.
# A second virtualenv, .venv-af2, runs the same test suite on Airflow 2.11 (the oldest Airflow we claim):
# pinned by ci/constraints-airflow-2.11.txt, rebuilt when that file or pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AF2_VENV := .venv-af2
AF2_BIN := $(AF2_VENV)/bin
AF2_STAMP := $(AF2_VENV)/.installed
AIRFLOW2_VERSION := 2.11.2
AF2_CONSTRAINTS := ci/constraints-airflow-2.11.txt
QIKBERRY_TOKEN ?= demo-token
EMULATOR_PORT ?= 8055

.DEFAULT_GOAL := help
.PHONY: help venv venv-af2 demo test test-af3 test-af2 lint docs bench emulator constraints-af2 clean distclean

help:
	@echo "make demo      run the demo DAG against a local Qikberry emulator"
	@echo "make test      lint + strict docs build + the whole test suite on Airflow 3.3, then on 2.11 (CI)"
	@echo "make test-af3  the whole test suite on Airflow 3.3 ($(VENV)) only"
	@echo "make test-af2  the whole test suite on Airflow $(AIRFLOW2_VERSION) ($(AF2_VENV)) only"
	@echo "make lint      ruff check, ruff format --check, mypy"
	@echo "make docs      build the documentation site into site/"
	@echo "make bench     run every benchmark script in bench/ (prints figures, never fails on them)"
	@echo "make emulator  run the emulator in the foreground (EMULATOR_PORT=$(EMULATOR_PORT), QIKBERRY_TOKEN)"
	@echo "make clean     remove build, cache and demo files (distclean also removes $(VENV), $(AF2_VENV))"
	@echo "make constraints-af2  re-resolve $(AF2_CONSTRAINTS) from scratch (review the diff)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

venv: $(STAMP)

# Installed with the pinned constraints so every run resolves the same set; the stamp makes re-runs instant.
$(AF2_STAMP): pyproject.toml $(AF2_CONSTRAINTS)
	test -x $(AF2_BIN)/python || $(PYTHON) -m venv $(AF2_VENV)
	$(AF2_BIN)/python -m pip install -c $(AF2_CONSTRAINTS) "apache-airflow==$(AIRFLOW2_VERSION)" -e ".[dev]"
	touch $@

venv-af2: $(AF2_STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Prerequisites run left to right (make is serial without -j): the 2.11 run (and its venv build) starts
# only after lint, docs and the 3.3 run passed.
test: lint docs test-af3 test-af2

test-af3: $(STAMP)
	$(BIN)/pytest -ra

test-af2: $(AF2_STAMP)
	$(AF2_BIN)/pytest -ra

bench: $(STAMP)
	@set -e; for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script; done

emulator: $(STAMP)
	$(BIN)/python -m airflow_qikberry.emulator --host 127.0.0.1 --port $(EMULATOR_PORT) --token $(QIKBERRY_TOKEN)

constraints-af2:
	rm -rf $(AF2_VENV)-resolve
	$(PYTHON) -m venv $(AF2_VENV)-resolve
	$(AF2_VENV)-resolve/bin/python -m pip install "apache-airflow==$(AIRFLOW2_VERSION)" -e ".[dev]"
	{ sed -n '/^#/p' $(AF2_CONSTRAINTS); $(AF2_VENV)-resolve/bin/python -m pip freeze --exclude-editable; } \
		> $(AF2_CONSTRAINTS).new
	mv $(AF2_CONSTRAINTS).new $(AF2_CONSTRAINTS)
	rm -rf $(AF2_VENV)-resolve

clean:
	rm -rf site .demo dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . \( -path ./$(VENV) -o -path ./$(AF2_VENV) \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(AF2_VENV)
