# Every target bootstraps .venv on first use: one command on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-long fuse browser sandbox bench bench-quick lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Motes needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/motes demo

test: $(STAMP)
	-@$(MAKE) --no-print-directory browser
	-@$(MAKE) --no-print-directory sandbox
	$(BIN)/python -m pytest -q

test-long: $(STAMP)
	-@$(MAKE) --no-print-directory fuse
	-@$(MAKE) --no-print-directory sandbox
	-@$(MAKE) --no-print-directory browser
	$(BIN)/python -m pytest -q -m long

# The dashboard's browser tests drive Debian's Chromium through Playwright for Python
# (its `executable_path`; never `playwright install`, which downloads a browser build).
# Best effort: where either cannot be installed, those tests skip and say why.
browser: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "chromium is not installed: the dashboard's browser tests will skip"; \
	fi
	@$(BIN)/python -c 'import playwright' 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet -e '.[dev,browser]' || \
	  echo "playwright is not installed: the dashboard's browser tests will skip"

# Confined native programs (motes.sandbox.confine) run under Debian's bubblewrap, and
# WebAssembly motes need the `wasm` extra (wasmtime, componentize-py).
# Best effort: where either cannot be installed, those tests skip and say why
# (the Landlock ones still run where the kernel has Landlock ABI >= 4).
sandbox: $(STAMP)
	@$(BIN)/python -c 'import wasmtime, componentize_py' 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet -e '.[dev,wasm]' || \
	  echo "the wasm extra is not installed: the WebAssembly mote tests will skip"
	@if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } || \
	  echo "bubblewrap is not installed: the bubblewrap sandbox tests will skip"; \
	fi

# `motes mount` needs pyfuse3, built against libfuse3 (Debian: libfuse3-dev fuse3 pkg-config).
# Best effort: where it cannot be installed, the mount tests skip and say why.
fuse: $(STAMP)
	@if ! $(BIN)/python -c 'import pyfuse3' 2>/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q libfuse3-dev fuse3 pkg-config >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libfuse3-dev fuse3 pkg-config >/dev/null 2>&1; }; \
	  fi; \
	  $(BIN)/python -m pip install --quiet -e '.[dev,fuse]' || echo "pyfuse3 is not installed: the mount tests will skip"; \
	fi

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info
