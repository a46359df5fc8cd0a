# The two commands a newcomer runs (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck bench bench-stream clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Set up, then run the quickstart notebook (offline against the simulator unless ANTHROPIC_API_KEY is set)
demo: $(STAMP)
	$(BIN)/python -m claude_force_magic.demo

## Set up, then run the whole test suite with lint and type checks
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Benchmarks (bench_stream in its short form; `make bench-stream` runs it at 300 chars/s, ~30 min)
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do \
	  if [ $$b = benchmarks/bench_stream.py ]; then $(BIN)/python $$b --quick || exit 1; \
	  else $(BIN)/python $$b || exit 1; fi; done

bench-stream: $(STAMP)
	$(BIN)/python benchmarks/bench_stream.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
