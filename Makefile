# Everything a fresh Debian 12 machine needs, from nothing: `make test`, `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The real readers the tests run: libpq's psql, the MariaDB client, PHP with mysqli,
# WordPress's own files, Elixir for Ecto's URL parsing, and the two servers.
# wordpress-theme-twentytwentythree is only a Recommends of wordpress, and apt-get runs
# with --no-install-recommends: the WordPress install test needs a theme to install.
DEBIAN_PACKAGES := postgresql postgresql-client mariadb-server mariadb-client \
	php-cli php-mysql wordpress wordpress-theme-twentytwentythree elixir jq ca-certificates

.PHONY: all venv system-deps lint test demo bench bench-peers clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# apt-get only as root and only for what is missing, so a developer's machine without
# root is left alone (the tests then say which reader is absent).
system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing Debian packages (run as root to install):$$missing" >&2; \
		fi; \
	fi

lint: venv
	$(BIN)/ruff check src tests benchmarks demo
	$(BIN)/ruff format --check src tests benchmarks demo
	$(BIN)/mypy
	$(BIN)/hadolint images/wordpress/Dockerfile images/phoenix/Dockerfile

test: system-deps venv lint
	$(BIN)/pytest

demo: system-deps venv
	$(BIN)/python demo/demo.py

# make bench's peers, the waiters users pick, pinned: npm's from the committed
# package-lock.json (npm ci), PyPI's by hash into a venv of their own. Only make bench
# installs them; make test never needs them. Node.js comes with this kind of machine;
# where npm is missing, Debian's nodejs and npm are installed (as root).
PEERS := benchmarks/peers

$(PEERS)/node_modules/.installed: $(PEERS)/package.json $(PEERS)/package-lock.json
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	cd $(PEERS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(PEERS)/.venv/.installed: $(PEERS)/requirements.txt
	$(PYTHON) -m venv $(PEERS)/.venv
	$(PEERS)/.venv/bin/python -m pip install --quiet --require-hashes --only-binary :all: \
		-r $(PEERS)/requirements.txt
	touch $@

bench-peers: $(PEERS)/node_modules/.installed $(PEERS)/.venv/.installed

# About 4-5 minutes; the table and its method: docs/benchmarks.md.
bench: system-deps venv bench-peers
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
