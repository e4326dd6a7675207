# Every target installs what it needs: a fresh clone needs only python3 and network access to PyPI.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VENV31 ?= .venv-3.1
UV_BIN := .tools/bin/uv
PY := $(VENV)/bin/python
PY31 := $(VENV31)/bin/python
LOCK := requirements/lock-airflow-3.3.txt
LOCK31 := requirements/lock-airflow-3.1.txt
export UV_CACHE_DIR ?= $(HOME)/.cache/uv
# Write .pyc files at install time: with PYTHONDONTWRITEBYTECODE set (as on some machines),
# every Airflow process would otherwise compile all of Airflow from source at each start.
export UV_COMPILE_BYTECODE := 1

.PHONY: help venv venv31 lock test lint unit test31 demo bench emulator clean system-deps dist mutation airflow

help:
	@echo "make demo   - run the reward catalogue refresh end to end against the local emulator"
	@echo "make airflow - the example DAGs in a local Airflow UI, with the emulator; prints URL and login"
	@echo "make test   - ruff, mypy and every test (Airflow 3.3.2, unit tests also on 3.1.8)"
	@echo "make bench  - run the benchmarks and rewrite BENCHMARKS.md"
	@echo "make lock   - re-resolve the locked dependencies"
	@echo "make dist   - build the wheels and sdists of the provider and the emulator into dist/, twine check"
	@echo "make mutation - mutmut over the provider, incremental (MUTATION_FULL=1: from scratch); writes MUTATION.md"

$(UV_BIN):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==0.13.8"

$(VENV)/.installed: $(UV_BIN) $(LOCK) setup.cfg emulator/pyproject.toml
	$(UV_BIN) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV_BIN) pip install --quiet -r $(LOCK)
	VIRTUAL_ENV=$(VENV) $(UV_BIN) pip install --quiet --no-deps -e . -e ./emulator
	touch $@

$(VENV31)/.installed: $(UV_BIN) $(LOCK31) setup.cfg emulator/pyproject.toml
	$(UV_BIN) venv --quiet --allow-existing --python $(PYTHON) $(VENV31)
	VIRTUAL_ENV=$(VENV31) $(UV_BIN) pip install --quiet -r $(LOCK31)
	VIRTUAL_ENV=$(VENV31) $(UV_BIN) pip install --quiet --no-deps -e . -e ./emulator
	touch $@

venv: $(VENV)/.installed
venv31: $(VENV31)/.installed

lock: $(UV_BIN)
	cd requirements && ../$(UV_BIN) pip compile --quiet --python-version 3.11 airflow-3.3.in -o lock-airflow-3.3.txt
	cd requirements && ../$(UV_BIN) pip compile --quiet --python-version 3.11 airflow-3.1.in -o lock-airflow-3.1.txt

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest -m "not integration and not e2e and not bench" -q

test31: venv31
	$(PY31) -m pytest -m "not integration and not e2e and not bench" -q -p no:cacheprovider

system-deps:
	bash scripts/ensure-system-deps.sh

test: lint venv31 system-deps
	$(PY) -m pytest -q
	$(PY31) -m pytest -m "not integration and not e2e and not bench" -q -p no:cacheprovider

emulator: venv
	$(PY) -m capillary_emulator

demo: venv
	$(PY) scripts/demo.py

bench: venv
	$(PY) benchmarks/run.py $(BENCH_ARGS)

dist: venv
	$(PY) scripts/dist.py --outdir dist

airflow: venv
	$(PY) scripts/airflow_local.py

# Not part of make test. Keeps mutmut's per-function results in mutants/: a second run tests only
# the mutants of changed functions plus the last survivors. One worker (MUTATION_WORKERS=2 for
# two), niced: the machine is shared.
mutation: venv
	nice -n 15 $(PY) scripts/mutation_report.py run $(if $(MUTATION_FULL),--full) --workers $(or $(MUTATION_WORKERS),1)

clean:
	rm -rf $(VENV) $(VENV31) .tools .pytest_cache .mypy_cache .ruff_cache .demo
