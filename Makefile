# One command each: `make run` sets up and runs the default job; `make test` sets up and runs the tests.
# TORCH is installed first, on purpose (see README, "Installing torch"). On a machine with a
# different CUDA, e.g.: make run TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
TORCH ?= torch==2.13.0
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled

.PHONY: setup run test bench
setup:
	$(PYTHON) -m pip install --quiet $(TORCH)
	$(PYTHON) -m pip install --quiet -e '.[test]'

run: setup
	$(PYTHON) -m learner.main $(ARGS)

test: setup
	$(PYTHON) -m pytest -q --durations=15

bench: setup
	$(PYTHON) -m benchmarks.overhead
	$(PYTHON) -m benchmarks.weight_sync
