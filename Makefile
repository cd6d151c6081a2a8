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
# The compiled build (setup.py, MILESTREAM_COMPILE=1: the per-record path compiled with mypyc), installed
# as users install it (not editable): rebuilt whenever a source changes. `make bench` measures it and
# `make test` runs the core's tests and the real-broker crash tests against it.
COMPILED_VENV := .venv-compiled
COMPILED_PY := $(COMPILED_VENV)/bin/python
COMPILED_STAMP := $(COMPILED_VENV)/.built
APP_SOURCES := $(shell find app -name '*.py')
# A package installed outside the repository finds the repository's files through these.
REPO_FILES := MILESTREAM_TOPICS_FILE=$(CURDIR)/topics.yaml MILESTREAM_KAFKA_DIR=$(or $(MILESTREAM_KAFKA_DIR),$(CURDIR)/.local/kafka)
KAFKA  := $(PYTHON) deploy/local_kafka.py
BOOTSTRAP_FILE := $(or $(MILESTREAM_KAFKA_DIR),.local/kafka)/run/bootstrap

BROWSER_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install compiled test-compiled browser screenshots kafka-fetch kafka-up kafka-down topics worker demo run lint test test-unit bench schemas clean

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

# Dependencies first (a pure build, replaced next), then the compiled package against them, so mypyc
# sees the dependencies' real types.
$(COMPILED_STAMP): $(STAMP) setup.py $(APP_SOURCES)
	[ -x $(COMPILED_PY) ] || $(PYTHON) -m venv $(COMPILED_VENV)
	$(COMPILED_PY) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	$(COMPILED_PY) -m pip install --quiet '.[test]'
	MILESTREAM_COMPILE=1 $(COMPILED_PY) -m pip install --quiet --no-build-isolation --no-deps --force-reinstall .
	touch $@

compiled: $(COMPILED_STAMP)

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
	$(VENV)/bin/ruff check app tests bench deploy setup.py
	$(VENV)/bin/ruff format --check app tests bench deploy setup.py
	$(VENV)/bin/mypy

test: lint kafka-fetch browser test-compiled
	$(PY) -m pytest

## test-compiled: the compiled build against the core's tests, then a real `milestream worker` of that
## build through the end-to-end and crash tests on the broker.
test-compiled: $(COMPILED_STAMP) kafka-fetch
	$(REPO_FILES) MILESTREAM_EXPECT_COMPILED=1 $(COMPILED_PY) -m pytest -m "not kafka" tests/test_build.py tests/engine tests/pipeline tests/state tests/runtime tests/worker tests/api tests/schemas tests/test_simulate.py tests/test_simulate_series.py
	$(REPO_FILES) $(COMPILED_PY) -m pytest tests/integration/test_end_to_end.py tests/integration/test_crash_recovery.py

test-unit: install
	$(PY) -m pytest -m "not kafka"

# The worker as deployed: the compiled build (deploy/Dockerfile builds the same).
bench: $(BENCH_STAMP) $(COMPILED_STAMP) kafka-fetch
	$(REPO_FILES) MILESTREAM_QUIX_PYTHON=$(BENCH_VENV)/bin/python $(COMPILED_PY) -m bench.run
	$(REPO_FILES) $(COMPILED_PY) -m bench.close
	$(REPO_FILES) $(COMPILED_PY) -m bench.restore
	$(REPO_FILES) $(COMPILED_PY) -m bench.api
	$(REPO_FILES) $(COMPILED_PY) -m bench.backfill

## screenshots: PNGs of each console page in docs/console/, against a worker with demo data
## (on the broker at KAFKA_BOOTSTRAP_SERVERS when set, else the local one, started if need be).
screenshots: install browser
	@if [ -n "$$KAFKA_BOOTSTRAP_SERVERS" ]; then bootstrap="$$KAFKA_BOOTSTRAP_SERVERS"; \
	else $(MAKE) --no-print-directory kafka-up && bootstrap=$$(cat $(BOOTSTRAP_FILE)); fi; \
	KAFKA_BOOTSTRAP_SERVERS="$$bootstrap" $(PY) -m tests.support.screenshots docs/console

schemas: install
	$(VENV)/bin/milestream schemas --out schemas --api-doc docs/api.md

clean:
	rm -rf .local build $(VENV) $(BENCH_VENV) $(COMPILED_VENV)
