# The two commands of the README: `make serve` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: serve test test-fast check lint bench chromium postgresql strace install

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,postgres]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Debian's Chromium, for render jobs and the browser tests (pyppeteer never downloads its own).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  command -v google-chrome >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null)

# Debian's PostgreSQL server binaries, for the PostgreSQL store's tests (each run starts a throwaway
# server from them in a temp folder, on a loopback port; nothing is installed as a service).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null)

# strace, for the test that watches every datagram Chromium sends (tests/test_browser_webrtc.py)
strace:
	@command -v strace >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq strace >/dev/null)

# Start the server on its embedded defaults: 127.0.0.1:8000, ./litejobs.db
serve: $(STAMP) chromium
	$(VENV)/bin/litejobs serve

# The whole suite, slow tests included (that is what CI runs).
test: $(STAMP) chromium postgresql strace
	$(VENV)/bin/pytest

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check litejobs tests bench
	$(VENV)/bin/ruff format --check litejobs tests bench

check: lint test

bench: $(STAMP) chromium
	$(PY) bench/bench_engine.py
