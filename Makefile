# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean chromium browser

# The Rust fast path for Postfix lines (fastpath/, a release build: ~1.5-2 min on 2 cores
# the first time) is built only where cargo is; without it the Polars parser reads them all.
$(STAMP): pyproject.toml fastpath/Cargo.toml fastpath/pyproject.toml $(wildcard fastpath/src/*.rs)
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	@if command -v cargo >/dev/null 2>&1; then \
	  echo "building the Rust fast path (fastpath/)"; \
	  $(BIN)/python -m pip install --quiet ./fastpath; \
	else \
	  echo "cargo not found: the Rust fast path is not built, Postfix lines take the Polars parser"; \
	fi
	@touch $@

# The main job on the bundled logs (a quiet day and an NHS-style storm day, 2016).
demo: $(STAMP)
	$(BIN)/mailstorm run sample_logs --year 2016 --tz UTC --out out/demo
	@echo "open out/demo/index.html"

# Tests run in two processes (pytest-xdist), each taking whole test files (--dist
# loadfile: a module-scoped fixture is built once), each with one DuckDB and one Polars
# thread (tests/conftest.py): on 2 cores that beat three processes (bench/README.md has
# the timings). `.venv/bin/pytest` alone still runs in one process.
test: $(STAMP)
	$(BIN)/ruff check detector tests bench
	$(BIN)/mypy
	@# the package's bytecode, which neither an editable install writes nor Python where
	@# PYTHONDONTWRITEBYTECODE is set: each of the suite's ~60 mailstorm processes would
	@# compile all of detector/ again (compileall redoes only the files changed since)
	$(BIN)/python -m compileall -q detector
	$(BIN)/pytest -n 2 --dist loadfile

# Debian's Chromium for the browser tests (tests/test_browser.py). Playwright drives it and
# never downloads a browser of its own. Installs as root only; otherwise it says what to
# run, and the browser tests skip saying why.
chromium:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; \
	else \
	  echo "chromium is missing and this is not root: run 'sudo apt-get install chromium'" \
	    "(the browser tests skip until then)" >&2; \
	fi

# The reports in a real browser; screenshots and PDFs are kept in out/browser/.
browser: $(STAMP) chromium
	MAILSTORM_ARTEFACTS=out/browser $(BIN)/pytest -m browser tests/test_browser.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf out .pytest_cache .ruff_cache
