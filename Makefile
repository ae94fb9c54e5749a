# Everything a newcomer needs, from a fresh clone: `make demo`, `make test`.
# The virtualenv is (re)built from pyproject.toml whenever that file is newer than the stamp.
# A second virtualenv, .venv-af2, runs the same test suite on Airflow 2.11 (the oldest Airflow we claim):
# pinned by ci/constraints-airflow-2.11.txt, rebuilt when that file or pyproject.toml changes.
# Both are built by uv, which the first build installs from the package index into .uv/ (pip takes a minute
# or two per venv, uv seconds); where uv cannot be installed, or with USE_UV=0, pip builds them as before.

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
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
UV_REQUIREMENT := uv>=0.5,<1
USE_UV ?= 1
# pytest-xdist workers per suite: two per CPU core. The tests wait more than they compute (Airflow services
# heartbeating, emulator delays, subprocesses starting): with one worker per core the Airflow 3.3 suite kept
# the cores 46% busy. Tests that check both sides of a delay stop the emulator's clock (manual_clock), so
# the extra load does not move their thresholds.
CORES := $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
TEST_WORKERS ?= $(shell echo $$((2 * $(CORES))))

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
	@echo "make clean     remove build, cache and demo files (distclean also removes $(VENV), $(AF2_VENV), $(UV_DIR))"
	@echo "make constraints-af2  re-resolve $(AF2_CONSTRAINTS) from scratch (review the diff)"

# uv in a venv of its own, from the package index. A failed install is not fatal: the venvs are then built
# with pip (and the next make tries uv again).
$(UV):
	@if [ "$(USE_UV)" = 1 ]; then \
		$(PYTHON) -m venv $(UV_DIR) && $(UV_DIR)/bin/python -m pip install --quiet "$(UV_REQUIREMENT)" \
		|| echo "*** could not install $(UV_REQUIREMENT) into $(UV_DIR): building the venvs with pip instead"; \
	fi

# $(call install,VENV,PIP ARGUMENTS): create VENV if missing, then install into it with uv or, without, pip.
# uv's venv gets pip too (--seed): a test builds the wheel with `python -m pip wheel`. --compile-bytecode
# writes the .pyc files at install, as pip does: uv does not by default, and where PYTHONDONTWRITEBYTECODE is
# set (it is on this project's machines) every test process would compile Airflow from source again (the
# suites took 60% more CPU).
define install
	@if [ "$(USE_UV)" = 1 ] && [ -x $(UV) ]; then \
		set -x; \
		test -x $(1)/bin/python || $(UV) venv --quiet --seed --python $(PYTHON) $(1); \
		$(UV) pip install --compile-bytecode --python $(1)/bin/python $(2); \
	else \
		set -x; \
		test -x $(1)/bin/python || $(PYTHON) -m venv $(1); \
		$(1)/bin/python -m pip install $(2); \
	fi
endef

$(STAMP): pyproject.toml | $(UV)
	$(call install,$(VENV),-e ".[dev]")
	touch $@

venv: $(STAMP)

# Installed with the pinned constraints so every run resolves the same set; the stamp makes re-runs instant.
$(AF2_STAMP): pyproject.toml $(AF2_CONSTRAINTS) | $(UV)
	$(call install,$(AF2_VENV),-c $(AF2_CONSTRAINTS) "apache-airflow==$(AIRFLOW2_VERSION)" -e ".[dev]")
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

# The Airflow 3.3 venv first; then its suite runs while lint, docs and the Airflow 2.11 venv are done beside
# it, and the 2.11 suite starts as soon as its venv is there: the two suites run at once, each in
# TEST_WORKERS xdist workers, so one suite's waits are the other's CPU time (one after the other, the 2.11
# suite alone kept the cores 70% busy). --output-sync prints each parallel step's output whole when it ends,
# not interleaved.
test: $(STAMP)
	@$(MAKE) --no-print-directory -j4 --output-sync=target test-af3 test-af2 lint docs

test-af3: $(STAMP)
	$(BIN)/pytest -ra -n $(TEST_WORKERS)

test-af2: $(AF2_STAMP)
	$(AF2_BIN)/pytest -ra -n $(TEST_WORKERS)

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
	find . \( -path ./$(VENV) -o -path ./$(AF2_VENV) -o -path ./$(UV_DIR) \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(AF2_VENV) $(UV_DIR)
