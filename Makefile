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
# make run trains on local worker processes, one per core (each with cpu_count / WORKERS torch threads)
WORKERS ?= $(shell $(PYTHON) -c "import os; print(os.cpu_count() or 1)")
ARGS   ?=

.PHONY: venv run capacity-map test test-fast data bench bench-torchdistill clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(PIP) "$(TORCH_SPEC)" numpy
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) -e ".[test,ray,hf,datasets,tensorboard]"
	touch $@

venv: $(VENV)/.base

data: venv
	$(BIN)/kdlab data fetch fashion-mnist

# the capacity-mismatch study, then the per-class (undistillable) analysis reusing its runs from the same store
run: data
	$(BIN)/kdlab study capacity --out $(OUT) --set store=$(STORE) --executor pool --workers $(WORKERS) $(ARGS)
	$(BIN)/kdlab study undistillable --out $(OUT)/undistillable --set store=$(STORE) --executor pool \
		--workers $(WORKERS) $(ARGS)

# the pre-registered capacity map (docs/studies/capacity-map.md; hours on 2 cores): rerun to resume from its store
MAP_STORE ?= /work/stores/capacity-map
capacity-map: data
	$(BIN)/kdlab study capacity-map --out reports/capacity-map --set store=$(MAP_STORE) --executor pool \
		--workers $(WORKERS) $(ARGS)

# the platform lines first: a float-tolerance failure on another processor is diagnosable from the log alone
test: $(VENV)/.test
	$(BIN)/python .ci/sysinfo.py
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: $(VENV)/.test
	$(BIN)/python .ci/sysinfo.py
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

# each script prints ratios measured in one run; kdlab vs torchdistill is `make bench-torchdistill` (its own venv)
bench: data
	$(BIN)/python benchmarks/bench_loop.py --models mlp --threads 1
	$(BIN)/python benchmarks/bench_loop.py --models cnn --epochs 1 --threads 1
	$(BIN)/python benchmarks/bench_study_workers.py
	$(BIN)/python benchmarks/bench_analysis_memory.py
	$(BIN)/python benchmarks/bench_compile_teacher.py

# kdlab vs torchdistill: torchdistill needs torchvision, which needs this CUDA build of torch (about 5.7 GB), so it gets
# its own venv holding both packages; never kdlab's venv or CI
TD_VENV ?= .venv-torchdistill
$(TD_VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(TD_VENV)
	$(TD_VENV)/bin/pip install --disable-pip-version-check -q $(FIND_LINKS) torch==2.14.1 torchvision==0.29.1 torchdistill==1.1.5 numpy
	$(TD_VENV)/bin/pip install --disable-pip-version-check -q $(FIND_LINKS) -e .
	touch $@

bench-torchdistill: $(TD_VENV)/.ready data
	$(TD_VENV)/bin/python benchmarks/bench_torchdistill.py $(ARGS)

clean:
	rm -rf $(VENV) $(TD_VENV) runs .pytest_cache
