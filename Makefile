# Everything a newcomer needs, from a fresh clone: `make demo`, `make test`.
# The virtualenv is (re)built from pyproject.toml whenever that file is newer than the stamp.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QIKBERRY_TOKEN ?= demo-token
EMULATOR_PORT ?= 8055

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint docs bench emulator clean distclean

help:
	@echo "make demo      run the demo DAG against a local Qikberry emulator"
	@echo "make test      lint + strict docs build + the whole test suite (what CI runs)"
	@echo "make lint      ruff check, ruff format --check, mypy"
	@echo "make docs      build the documentation site into site/"
	@echo "make bench     run every benchmark script in bench/ (prints figures, never fails on them)"
	@echo "make emulator  run the emulator in the foreground (EMULATOR_PORT=$(EMULATOR_PORT), QIKBERRY_TOKEN)"
	@echo "make clean     remove build, cache and demo files (distclean also removes $(VENV))"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint docs
	$(BIN)/pytest -ra

bench: $(STAMP)
	@set -e; for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script; done

emulator: $(STAMP)
	$(BIN)/python -m airflow_qikberry.emulator --host 127.0.0.1 --port $(EMULATOR_PORT) --token $(QIKBERRY_TOKEN)

clean:
	rm -rf site .demo dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
