# The README's two commands live here: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNS ?= results/runs

.PHONY: setup demo test test-slow lint clean

setup: $(BIN)/bench

$(BIN)/bench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,cluster]"
	touch $@

demo: setup
	$(BIN)/bench run -m experiment=demo paths.runs=$(RUNS)
	$(BIN)/bench report $(RUNS)/demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check bench optimizers tasks tests

clean:
	rm -rf $(RUNS) outputs multirun .pytest_cache .ruff_cache
