# Milestream: `make run` (the main job on a local broker) and `make test` (every test)
# do all set-up themselves: a virtualenv in .venv, the Python dependencies, and
# Apache Kafka's jars from Maven Central into .local/kafka (needs Java 17 + Maven).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
KAFKA  := $(PYTHON) deploy/local_kafka.py
BOOTSTRAP_FILE := $(or $(MILESTREAM_KAFKA_DIR),.local/kafka)/run/bootstrap

.PHONY: install kafka-fetch kafka-up kafka-down topics worker demo run lint test test-unit bench schemas clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

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

test: lint kafka-fetch
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest -m "not kafka"

bench: install kafka-fetch
	$(PY) -m bench.run
	$(PY) -m bench.close
	$(PY) -m bench.api

schemas: install
	$(VENV)/bin/milestream schemas --out schemas --api-doc docs/api.md

clean:
	rm -rf .local $(VENV)
