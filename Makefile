# The README's two commands: `make demo` and `make test`. Both build .venv
# themselves (CPU torch first, so no multi-GB CUDA build is pulled).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.eastmir-installed
TORCH  ?= torch==2.13.0
WORKDIR ?= $(CURDIR)/demo-output

.PHONY: demo test lint test-slow bench bench-quick venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]" "$(TORCH)"
	$(BIN)/python -m pip install --quiet --no-deps "tinysoundfont>=0.3.7"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eastmir demo --workdir "$(WORKDIR)"

test: lint
	$(BIN)/python -m pytest

# The structure is checked, not only described: lint, format and the layers of DESIGN.md.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/step_time.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/step_time.py --quick

clean:
	rm -rf $(VENV) demo-output .pytest_cache
