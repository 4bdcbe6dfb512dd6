# One command each: `make run` sets up and runs the default job; `make test` sets up and runs the tests (the linter,
# then tests/unit: in-process, minutes; then tests/e2e: real Ray and real processes). `make test-unit` / `make test-e2e`: one tier.
# Both install into a project virtualenv, .venv (created on first use), never into the system Python.
# TORCH is installed first, on purpose (see README, "Installing torch"). On a machine with a
# different CUDA, e.g.: make run TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled

.PHONY: setup run test test-unit test-e2e bench clean-venv
$(PY):
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { echo "error: $(PYTHON) cannot create a virtualenv (no venv/ensurepip module); install it, e.g. 'apt-get install python3-venv' on Debian/Ubuntu, then run make again" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The installs run once (and again when pyproject.toml or this file changes; `make clean-venv` starts over,
# e.g. to change TORCH): the stamp file records that they completed.
STAMP := $(VENV)/.sdpo-ray-installed
$(STAMP): $(PY) pyproject.toml Makefile
	@echo "setup: installing $(TORCH) and this project with its dependencies (ray, diffusers, transformers, test tools) into $(VENV)/;"
	@echo "setup: this happens on the first run only and takes about 3-8 minutes (about 1.8 GB; pip is quiet meanwhile)"
	@start=$$(date +%s) && \
	$(PY) -m pip install --quiet $(TORCH) && \
	$(PY) -m pip install --quiet -e '.[test]' && \
	echo "setup: done in $$(( $$(date +%s) - start )) s: $$($(PY) -c 'import torch, ray, diffusers; print(f"torch {torch.__version__}, ray {ray.__version__}, diffusers {diffusers.__version__}")') in $(VENV)/"
	@touch $@

setup: $(STAMP)

run: setup
	$(PY) -m learner.main $(ARGS)

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q --durations=15 tests/unit tests/e2e

test-unit: setup
	$(PY) -m pytest -q --durations=15 tests/unit

test-e2e: setup
	$(PY) -m pytest -q --durations=15 tests/e2e

bench: setup
	$(PY) -m benchmarks.overhead
	$(PY) -m benchmarks.weight_sync
	$(PY) -m benchmarks.layout

clean-venv:
	rm -rf $(VENV)
