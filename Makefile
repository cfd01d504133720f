# Everything a fresh Debian 12 machine needs, from nothing: `make test`, `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The real readers the tests run: libpq's psql, the MariaDB client, PHP with mysqli,
# WordPress's own files, Elixir for Ecto's URL parsing, and the two servers.
# wordpress-theme-twentytwentythree is only a Recommends of wordpress, and apt-get runs
# with --no-install-recommends: the WordPress install test needs a theme to install.
# The framework clients of tests/test_framework_urls.py: Node (pg, mysql2, Prisma's
# adapters from tests/frameworks/node's lockfile; Prisma 7 needs Node 20.19+, which the
# machine image ships with its own npm: Debian's npm package would conflict with it, and
# Debian 12's nodejs 18 is too old), ActiveRecord with the pg and mysql2 gems, Laravel's
# database layer with PDO pgsql/mysql, and what mysqlclient (PyPI) builds against.
# tests/test_faults.py: tini (the init of docker run --init and ECS initProcessEnabled),
# ip (a network namespace and a veth pair), unshare and nsenter (a PID namespace).
DEBIAN_PACKAGES := postgresql postgresql-client mariadb-server mariadb-client \
	php-cli php-mysql wordpress wordpress-theme-twentytwentythree elixir jq ca-certificates \
	nodejs ruby ruby-activerecord ruby-pg ruby-mysql2 php-pgsql php-illuminate-database \
	default-libmysqlclient-dev pkg-config gcc \
	tini iproute2 util-linux
NODE_CLIENTS := tests/frameworks/node

.PHONY: all venv node-clients system-deps lint test test-fast demo bench bench-peers clean constraints

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# cloudboot's own dependencies at the versions the images install (images/constraints.txt),
# so the tests prove what the images ship; mysqlclient builds against libmariadb, so the
# Debian packages come first.
$(VENV)/.installed: pyproject.toml images/constraints.txt | system-deps $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -c images/constraints.txt
	touch $@

# The independent copy of the RDS CAs that tests/test_rds_bundle.py checks the images'
# bundle against, from its committed lockfile (integrity-checked by npm).
RDS_WITNESS := tests/rds_witness
$(RDS_WITNESS)/node_modules/.installed: $(RDS_WITNESS)/package-lock.json
	npm ci --prefix $(RDS_WITNESS) --ignore-scripts --no-audit --no-fund --silent
	touch $@

venv: $(VENV)/.installed $(RDS_WITNESS)/node_modules/.installed

# Regenerate images/constraints.txt: cloudboot's dependencies resolved afresh, plus the
# build backend. Then `make test`.
constraints:
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet --upgrade setuptools .
	{ sed -n '/^#/p' images/constraints.txt; \
	  .constraints-venv/bin/pip freeze --all --exclude cloudboot --exclude pip --exclude setuptools; \
	  .constraints-venv/bin/pip freeze --all | grep -i '^setuptools=='; } > images/constraints.txt.new
	mv images/constraints.txt.new images/constraints.txt
	rm -rf .constraints-venv

# Exactly the lockfile's versions; again only when the lockfile changes.
$(NODE_CLIENTS)/node_modules/.package-lock.json: $(NODE_CLIENTS)/package-lock.json | system-deps
	cd $(NODE_CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-clients: $(NODE_CLIENTS)/node_modules/.package-lock.json

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
	$(BIN)/hadolint images/*/Dockerfile
	$(BIN)/cfn-lint images/*/deploy/cloudformation.yaml

# The whole suite, with branch coverage of src/bootstrap (the tests' cloudboot processes
# included) reported at the end.
test: system-deps venv node-clients lint
	$(BIN)/pytest --cov --cov-report=term

# The tests that need no database server, without lint or coverage: the quick loop.
test-fast: venv node-clients
	$(BIN)/pytest -q -m "not server" -n auto

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(RDS_WITNESS)/node_modules \
		$(NODE_CLIENTS)/node_modules
