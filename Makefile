# Two entry points: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist

# Nothing we run talks to Prefect Cloud or sends telemetry.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup system-deps run test bench clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,dask]'
	touch $@

# The real Fashion-MNIST files come from Debian's package on machines without internet.
system-deps:
	@if [ ! -d $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "note: $(FASHION_MNIST) missing; run 'sudo apt-get install dataset-fashion-mnist' (tests that need it are skipped)"; fi; \
	fi

run: setup
	$(PY) -m featurestore.cli run --root featurestore-home
	@echo "everything is under $(CURDIR)/featurestore-home; for featurestore ls/show/verify and featurestore.load():"
	@echo "  export FEATURESTORE_HOME=$(CURDIR)/featurestore-home"

test: setup
	$(PY) -m pytest -q -ra --durations=40

# Each benchmark prints its own ratios; benchmarks/evaluate.py needs stores (see its docstring).
bench: setup
	$(PY) benchmarks/store_io.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/extract.py --models efficientnet_lite0
	$(PY) benchmarks/orchestration.py

clean:
	rm -rf $(VENV) .pytest_cache
