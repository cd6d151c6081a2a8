# Milestream: `make run` (the main job on a local broker) and `make test` (every test)
# do all set-up themselves: a virtualenv in .venv, the Python dependencies, and
# Apache Kafka's jars from Maven Central into .local/kafka (needs Java 17 + Maven).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The Quix Streams baseline pins an older pydantic: it gets a virtualenv of its own, so the
# project's (and `make test`'s) keep the current one.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
KAFKA  := $(PYTHON) deploy/local_kafka.py
BOOTSTRAP_FILE := $(or $(MILESTREAM_KAFKA_DIR),.local/kafka)/run/bootstrap

BROWSER_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser screenshots kafka-fetch kafka-up kafka-down topics worker demo run lint test test-unit bench schemas clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Headless Chromium and its driver for the console's browser tests (Debian packages), when missing.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { \
		$(BROWSER_SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(BROWSER_SUDO) apt-get install -y -qq chromium chromium-driver; }

# The bench extra (the Quix Streams baseline) on top of the test environment.
$(BENCH_STAMP): $(STAMP)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[bench]'
	rm -f $(BENCH_VENV)/.installed-* && touch $@

kafka-fetch:
	$(KAFKA) fetch

kafka-up: kafka-fetch
	$(KAFKA) up

kafka-down:
	$(KAFKA) down

topics: install kafka-up
	KAFKA_BOOTSTRAP_SERVERS=$$(cat $(BOOTSTRAP_FILE)) $(VENV)/bin/milestream topics apply

worker: topics
	KAFKA_BOOTSTRAP_SERVERS=$$(cat $(BOOTSTRAP_FILE)) $(VENV)/bin/milestream worker

demo: install
	KAFKA_BOOTSTRAP_SERVERS=$$(cat $(BOOTSTRAP_FILE)) $(VENV)/bin/milestream demo

## run: broker + topics + a worker, then a demo stream whose milestone events are printed.
## The worker keeps running afterwards; Ctrl-C stops it (`make kafka-down` stops the broker).
run: topics
	KAFKA_BOOTSTRAP_SERVERS=$$(cat $(BOOTSTRAP_FILE)) deploy/run.sh $(VENV)/bin/milestream

## lint: ruff (lint and format) on the tree, mypy on the package; part of `make test`.
lint: install
	$(VENV)/bin/ruff check app tests bench deploy
	$(VENV)/bin/ruff format --check app tests bench deploy
	$(VENV)/bin/mypy

test: lint kafka-fetch browser
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest -m "not kafka"

bench: $(BENCH_STAMP) kafka-fetch
	MILESTREAM_QUIX_PYTHON=$(BENCH_VENV)/bin/python $(PY) -m bench.run
	$(PY) -m bench.close
	$(PY) -m bench.restore
	$(PY) -m bench.api
	$(PY) -m bench.backfill

## screenshots: PNGs of each console page in docs/console/, against a worker with demo data
## (on the broker at KAFKA_BOOTSTRAP_SERVERS when set, else the local one, started if need be).
screenshots: install browser
	@if [ -n "$$KAFKA_BOOTSTRAP_SERVERS" ]; then bootstrap="$$KAFKA_BOOTSTRAP_SERVERS"; \
	else $(MAKE) --no-print-directory kafka-up && bootstrap=$$(cat $(BOOTSTRAP_FILE)); fi; \
	KAFKA_BOOTSTRAP_SERVERS="$$bootstrap" $(PY) -m tests.support.screenshots docs/console

schemas: install
	$(VENV)/bin/milestream schemas --out schemas --api-doc docs/api.md

clean:
	rm -rf .local $(VENV) $(BENCH_VENV)
