# kdlab: the two commands that always work on a fresh clone are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned to the CPU build that lies on this machine's disk; elsewhere override TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP    := $(BIN)/pip install --disable-pip-version-check -q $(FIND_LINKS)
OUT    ?= runs/main
STORE  ?= runs/store
ARGS   ?=

.PHONY: venv run test test-fast data bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(PIP) "$(TORCH_SPEC)" numpy
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) -e ".[test,ray]"
	touch $@

venv: $(VENV)/.base

data: venv
	$(BIN)/kdlab data fetch fashion-mnist

# the capacity-mismatch study, then the per-class (undistillable) analysis reusing its runs from the same store
run: data
	$(BIN)/kdlab study capacity --out $(OUT) --set store=$(STORE) $(ARGS)
	$(BIN)/kdlab study undistillable --out $(OUT)/undistillable --set store=$(STORE) $(ARGS)

test: $(VENV)/.test
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: $(VENV)/.test
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

bench: venv
	$(BIN)/python benchmarks/bench_loop.py
	$(BIN)/python benchmarks/bench_loop.py --model cnn

clean:
	rm -rf $(VENV) runs .pytest_cache
