# The README's two commands: `make demo` and `make test`. Both build .venv
# themselves (CPU torch first, so no multi-GB CUDA build is pulled).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.eastmir-installed
TORCH  ?= torch==2.13.0
WORKDIR ?= $(CURDIR)/demo-output

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps "tinysoundfont>=0.3.7"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eastmir demo --workdir "$(WORKDIR)"

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
