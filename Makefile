# The README's two commands live here: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNS ?= results/runs
CI_DATA ?= .ci-data/cifar10

.PHONY: setup demo test test-slow lint studies ci ci-baseline clean

setup: $(BIN)/bench

$(BIN)/bench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,cluster,nlp]"
	touch $@

demo: setup
	$(BIN)/bench run -m experiment=demo paths.runs=$(RUNS)
	$(BIN)/bench report $(RUNS)/demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# The shipped studies (issue 24; bench/studies.py lists them): each runs its conf/experiment, STUDY_JOBS runs at
# a time with one thread each, then rewrites results/studies/<name>/ and the README's table of their verdicts.
# Two need data: PTB_DIR (ptb.{train,valid,test}.txt) and MULTI30K_DIR (the Multi30k task-1 release, prepared once
# into MULTI30K_BPE_DIR, default data/multi30k-bpe). STUDIES="digits_zoo pinn_literature" runs a subset.
STUDY_JOBS ?= 2
STUDIES ?=

studies: setup
	OMP_NUM_THREADS=1 $(BIN)/bench studies run --jobs $(STUDY_JOBS) --runs $(RUNS) $(STUDIES)

# The accuracy guard: a deterministic CPU study (CI_JOBS runs at a time, one thread each), checked against the
# committed baseline with tolerances derived from its seed noise. `make ci-baseline` rewrites that baseline from a
# fresh run, after showing the diff; lowering a value needs ACCEPT=--accept-regression.
CI_JOBS ?= 2
CI_STUDY = CIFAR10_DIR=$(CI_DATA) OMP_NUM_THREADS=1 $(BIN)/bench run -m experiment=ci launcher=gpus \
	hydra.launcher.n_jobs=$(CI_JOBS) paths.runs=$(RUNS) force=true

ci: setup
	$(BIN)/python -m tests.fixtures cifar10 $(CI_DATA)
	$(CI_STUDY)
	$(BIN)/bench check $(RUNS)/ci --baseline results/baselines/ci.yaml

ci-baseline: setup
	$(BIN)/python -m tests.fixtures cifar10 $(CI_DATA)
	$(CI_STUDY)
	$(BIN)/bench check $(RUNS)/ci --write-baseline results/baselines/ci.yaml $(ACCEPT)

lint: setup
	$(BIN)/ruff check bench optimizers tasks tests

clean:
	rm -rf $(RUNS) .ci-data outputs multirun .pytest_cache .ruff_cache
