# The README's two commands: `make demo` and `make test`. Both build .venv
# themselves (CPU torch first, so no multi-GB CUDA build is pulled).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.eastmir-installed
TORCH  ?= torch==2.13.0
WORKDIR ?= $(CURDIR)/demo-output

# The PaSST teacher's package declares torchaudio and timm, which eastmir does not need and which could replace
# the torch installed above: it is installed with --no-deps, and this check stops the build if torch changed.
define TORCH_CHECK
import sys
from importlib.metadata import version
wanted, have = sys.argv[1].partition("==")[2], version("torch")
if wanted and have.split("+")[0] != wanted.split("+")[0]:
    sys.exit(f"eastmir: error: torch {have} replaced {sys.argv[1]} in the venv; rebuild it with `make clean venv`")
endef
export TORCH_CHECK

.PHONY: demo test lint test-slow bench bench-quick venv clean chromium

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]" "$(TORCH)"
	$(BIN)/python -m pip install --quiet --no-deps "tinysoundfont>=0.3.7"
	$(BIN)/python -m pip install --quiet --no-deps "hear21passt==0.0.26"
	$(BIN)/python -c "$$TORCH_CHECK" "$(TORCH)"
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || $(MAKE) chromium
	touch $(STAMP)

# A Chromium for the test of the HTML report (opened headless through playwright): Debian's where apt is
# there (CI), else playwright's own build (a Mac, another Linux), which the test finds through playwright.
# Two builds at once (make test and make demo in two clones) take turns: one installs, the other finds it.
chromium:
	if command -v apt-get >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		exec 9>"$${TMPDIR:-/tmp}/eastmir-chromium.lock" && flock 9 && \
		{ command -v chromium >/dev/null || { \
			$$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && \
			$$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium; }; }; \
	else \
		$(BIN)/python -m playwright install chromium; \
	fi

demo: $(STAMP)
	$(BIN)/eastmir demo --workdir "$(WORKDIR)"

test: lint
	$(BIN)/python -m pytest

# The structure is checked, not only described: lint, format and the layers of docs/architecture.md.
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
