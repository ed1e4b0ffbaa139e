# ascend-serve-bundle: build, start, check and keep an LLM server healthy.
# Every target is listed by `make help`; variables below can be overridden:
#   make up PLATFORM=cpu PORT=8001
.DEFAULT_GOAL := help
SHELL := /bin/bash

PLATFORM ?= auto
PORT ?= 8000
BUNDLE_CACHE ?= $(HOME)/.cache/ascend-serve-bundle
ENV_FILE ?= $(wildcard .env)
PYTEST_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
export BUNDLE_CACHE
export PYTHONPATH := $(CURDIR)

.PHONY: help ## print the targets
help:
	@grep -E '^\.PHONY: [a-z-]+ ## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) ## (.*)/  \1\t\2/' | expand -t 20

.PHONY: venv ## make the project venv (vLLM CPU build, cached under BUNDLE_CACHE)
venv:
	@scripts/bootstrap-venv.sh $(VENV) >/dev/null

.PHONY: fixture ## build the real Gemma 3 270M test-bed weights (cached under BUNDLE_CACHE)
fixture: venv
	@$(PY) scripts/build_fixture_model.py --cache-dir $(BUNDLE_CACHE)/models

.PHONY: up ## serve the default model and return once it is healthy
up: venv
	@PLATFORM=$(PLATFORM) PORT=$(PORT) scripts/native.sh up

.PHONY: down ## stop the server started by `make up`
down:
	@scripts/native.sh down

.PHONY: logs ## follow the server's log
logs:
	@scripts/native.sh logs

.PHONY: smoke ## run the seed's smoke checks against the running server
smoke: venv
	@$(PY) -m entrypoint $(if $(ENV_FILE),--env-file $(ENV_FILE)) smoke

.PHONY: render ## print the serve command (try PLATFORM=npu on a machine without an NPU)
render: venv
	@PLATFORM=$(PLATFORM) PORT=$(PORT) $(PY) -m entrypoint $(if $(ENV_FILE),--env-file $(ENV_FILE)) render

.PHONY: test ## run every test layer (what CI runs)
test: test-unit test-integration

.PHONY: test-unit ## fast tests: settings, rendering, probes
test-unit: venv
	@scripts/pytest-layer.sh unit $(PYTEST_ARGS)

.PHONY: test-integration ## real vLLM on the CPU with the fixture model and a loopback hub
test-integration: venv fixture
	@scripts/pytest-layer.sh integration $(PYTEST_ARGS)

.PHONY: bench-startup ## time-to-ready of `entrypoint serve` vs plain vLLM, and probe latency
bench-startup: venv fixture
	@$(PY) bench/startup.py

.PHONY: lint ## ruff on the code, yamllint on the YAML
lint: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/yamllint -s templates

.PHONY: clean ## remove the venv link and run state (the cache under BUNDLE_CACHE stays)
clean:
	rm -rf $(VENV) .run .pytest_cache
