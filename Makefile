# wm: `make train` and `make test` set everything up on a fresh machine (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU wheel; an unpinned torch would pull a multi-GB CUDA build
TORCH  ?= torch==2.13.0
ARGS   ?=
BENCH  ?= all
SWEEP  ?= sample_efficiency
RUNS   ?= multirun/$(SWEEP)
OUT    ?= $(RUNS)/report
PYTEST_ARGS ?= -m "not slow" --durations=30

.PHONY: help install train test bench sweep report results lint clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install torch (CPU) + wm in editable mode with dev extras

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

train: install  ## run the default experiment (override with ARGS="env=... seed=3")
	$(PY) train.py $(ARGS)

test: install  ## the fast test suite
	$(PY) -m pytest $(PYTEST_ARGS)

results: install  ## regenerate docs/results.md (every figure of bench/results and docs/reports)
	$(PY) -m bench.results_doc

bench: install  ## run benchmarks (BENCH=dqn for one); results go to bench/results/
	$(PY) -m bench $(BENCH)

sweep: install  ## run a named sweep from sweep/ (SWEEP=sample_efficiency)
	$(PY) train.py sweep=$(SWEEP) $(ARGS)

report: install  ## comparison report of a sweep or run dirs (RUNS=multirun/<sweep> OUT=<dir>)
	$(PY) -m wm.report $(RUNS) --out $(OUT) $(ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check wm tests bench train.py

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
