# The README's two commands live here: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNS ?= results/runs
CI_DATA ?= .ci-data/cifar10

.PHONY: setup demo test test-slow lint ci clean

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

# The accuracy guard: a deterministic CPU study, checked against the committed baseline.
ci: setup
	$(BIN)/python -m tests.fixtures cifar10 $(CI_DATA)
	CIFAR10_DIR=$(CI_DATA) $(BIN)/bench run -m experiment=ci paths.runs=$(RUNS) force=true
	$(BIN)/bench check $(RUNS)/ci --baseline results/baselines/ci.yaml

lint: setup
	$(BIN)/ruff check bench optimizers tasks tests

clean:
	rm -rf $(RUNS) .ci-data outputs multirun .pytest_cache .ruff_cache
