# ascend-serve-bundle: build, start, check and keep an LLM server healthy.
# Every target is listed by `make help`; variables below can be overridden:
#   make up PLATFORM=cpu PORT=8001
.DEFAULT_GOAL := help
SHELL := /bin/bash

# The variables Make shares with the entrypoint's settings come from the command line or the
# environment first, then ENV_FILE (.env, the file Compose and the entrypoint read), then the
# defaults below. scripts/make-config.py (standard library only) reads them and refuses a value
# that cannot be used or would reach a shell unsafely: one line, and nothing runs.
ENV_FILE ?= $(wildcard .env)
SETTING_VARS := PLATFORM IMAGE_VERSION NPU_HARDWARE PORT REPLICAS API_KEY_FILE MODELSCOPE_TOKEN_FILE \
	NPU_DEVICES NPU_DEVICE
CHECKED_VARS := ENGINE PROJECT RENDER_FORMAT WARM_ISAS TESTBED WARM PROMETHEUS_PORT RESULTS_DIR
quote = '$(subst ','\'',$(1))'
MAKE_CONFIG := $(shell python3 scripts/make-config.py $(call quote,$(ENV_FILE)) \
	$(foreach v,$(SETTING_VARS),$(if $(and $(filter-out undefined,$(origin $v)),$($v)),$(call quote,$v=$($v)),$v?)) \
	$(foreach v,$(CHECKED_VARS),$(if $(filter undefined,$(origin $v)),,$(call quote,$v=$($v)))))
$(if $(filter error:,$(firstword $(MAKE_CONFIG))),$(error $(MAKE_CONFIG)))
$(foreach assignment,$(MAKE_CONFIG),$(eval $(assignment)))
$(foreach v,IMAGE_VERSION NPU_DEVICES NPU_DEVICE,$(if $($v),$(eval export $v)))

PLATFORM ?= auto
PORT ?= 8000
# Host port of Prometheus started by `make monitor`.
PROMETHEUS_PORT ?= 9090
# docker: Compose with the platform override; native: the project venv; auto: docker when an engine answers.
ENGINE ?= auto
# 1: serve the test bed's fixture weights through a hub container instead of ModelScope (Docker only).
TESTBED ?= 0
# 1: `up` builds and runs the CPU image with warmed compile caches (`make image-warm`), so a
# first start on a fresh volume is warm. WARM_WEIGHTS: the host folder of the weights it warms on
# (TESTBED=1: the fixture); WARM_ISAS: native (this CPU's) and/or avx2 (any AVX2-only CPU).
WARM ?= 0
WARM_ISAS ?= native avx2
WARM_WEIGHTS ?= $(if $(filter 1,$(TESTBED)),$(FIXTURE_WEIGHTS))
# Compose project name: containers, network and cache volume are named after it.
PROJECT ?= ascend-serve
# `serve` replicas (Docker only). Above 1, vLLM's router (compose/router.yaml) takes the
# published port and spreads requests over them by ROUTER_POLICY.
REPLICAS ?= 1
ROUTER_POLICY ?= cache_aware
# The cross-run cache and the native server's state folder: defined in scripts/paths.sh.
BUNDLE_CACHE := $(shell . scripts/paths.sh && echo "$$BUNDLE_CACHE")
NATIVE_STATE_DIR := $(shell . scripts/paths.sh && echo "$$NATIVE_STATE_DIR")
RENDER_FORMAT ?= shell
PYTEST_ARGS ?=
# Extra options for `make bench` / `make eval`, e.g. BENCH_ARGS="--preset quick" EVAL_ARGS="--quick".
BENCH_ARGS ?=
EVAL_ARGS ?=
# Options for scripts/rollout.py (`make rollout`), e.g. ROLLOUT_ARGS="--drain 60".
ROLLOUT_ARGS ?=
# Where `make bench` / `make eval` write their run folders.
RESULTS_DIR ?= perf_results
# Host files holding the API key / ModelScope token: passed as Compose secrets (Docker) or
# as API_KEY_FILE / MODELSCOPE_TOKEN_FILE (native). Empty: no key, public model.
API_KEY_FILE ?=
MODELSCOPE_TOKEN_FILE ?=
# With it, vLLM's /metrics wants the key and `make monitor`'s Prometheus sends this file's one key.
METRICS_KEY_FILE ?=
# Image builds: a registry mirror prefix put in front of every base image name (e.g.
# m.daocloud.io/); PIP_INDEX_URL, BASE_IMAGE, CPU_BASE_IMAGE and CUDA_BASE_IMAGE pass
# from the environment too. docs/operations.md: Registries and mirrors.
REGISTRY_MIRROR ?=
export REGISTRY_MIRROR
# The Ascend hardware an NPU image is built for (templates/images.yaml's `hardware`; empty: the
# first listed); it picks the vllm-ascend base image's tag suffix for IMAGE_VERSION.
NPU_HARDWARE ?=
export NPU_HARDWARE
VENV := .venv
PY := $(VENV)/bin/python
export BUNDLE_CACHE PROMETHEUS_PORT
# Compose builds with its own BuildKit client; Bake needs buildx, which may be absent.
export COMPOSE_BAKE := false
export PYTHONPATH := $(CURDIR)

# PLATFORM=auto resolved here the way the entrypoint does it (standard library only).
RESOLVED_PLATFORM = $(if $(filter auto,$(PLATFORM)),$(shell python3 -c 'from entrypoint.platform_detect import detect_platform; print(detect_platform())'),$(PLATFORM))
RESOLVED_ENGINE = $(if $(filter auto,$(ENGINE)),$(shell docker info >/dev/null 2>&1 && echo docker || echo native),$(ENGINE))
FIXTURE_WEIGHTS = $(if $(filter 1,$(TESTBED)),$(shell $(PY) scripts/testbed/build_fixture_model.py --print-path 2>/dev/null))
# TESTBED=1: vLLM's compile cache in a host folder that outlives the runs' cache volumes
# (compose/testbed-compile-cache.yaml), keyed by the image's runtime and its lock.
TESTBED_COMPILE_CACHE = $(if $(filter 1,$(TESTBED)),$(BUNDLE_CACHE)/container-compile/$(or $(RUNTIME),cpu)-$(shell \
	sha256sum requirements/lock-runtime-$(shell uname -m).txt | cut -c1-16))
COMPOSE_FILES = compose/compose.yaml compose/$(RESOLVED_PLATFORM).yaml $(if $(NPU),$(NPU_CARDS_FILE)) \
	$(if $(filter 1,$(TESTBED)),compose/testbed.yaml compose/testbed-compile-cache.yaml) \
	$(if $(API_KEY_FILE),compose/api-key.yaml) $(if $(MODELSCOPE_TOKEN_FILE),compose/modelscope-token.yaml) \
	$(if $(METRICS_KEY_FILE),compose/metrics-key.yaml) \
	$(if $(ROUTED),compose/router.yaml $(if $(API_KEY_FILE),compose/router-api-key.yaml)) \
	$(if $(filter 1,$(WARM)),compose/warm.yaml)
# Non-empty when REPLICAS > 1: the router override is on and `up` waits for the router too.
ROUTED = $(filter-out 1,$(REPLICAS))
export REPLICAS ROUTER_POLICY
# The root compose.yaml (scripts/compose-root.sh) names these files and values, so the plain
# `docker compose run --rm smoke`, `ps`, `logs` and `down` at the checkout root match `make up`.
# NPU: every card one server needs (NPU_DEVICES, else NPU_DEVICE, else TENSOR_PARALLEL_SIZE x
# PIPELINE_PARALLEL_SIZE x DATA_PARALLEL_SIZE cards from 0, counted by the image's settings
# after the build: NPU_COUNT) as an override scripts/npu-devices.py writes; NPU_DEVICE becomes
# the first card, the one compose/npu.yaml maps itself.
NPU = $(filter npu,$(RESOLVED_PLATFORM))
NPU_CARDS_FILE = .run/npu-devices.yaml
# Also the base image for IMAGE_VERSION (the setting) on NPU_HARDWARE, and IMAGE_VERSION as a
# build argument the image keeps as ENV (scripts/base-image.py; a BASE_IMAGE you set wins).
NPU_PREP = $(if $(NPU),base=$$(python3 scripts/base-image.py) && eval "$$base" \
	&& NPU_DEVICE=$$(python3 scripts/npu-devices.py $(NPU_CARDS_FILE)) && export NPU_DEVICE &&)
NPU_COUNT = $(if $(NPU),$(COMPOSE) run --rm --no-deps -T serve settings 2>/dev/null \
	| python3 scripts/npu-devices.py $(NPU_CARDS_FILE) --settings-json - >/dev/null)
COMPOSE = $(NPU_PREP) ENV_FILE=$(abspath $(ENV_FILE)) FIXTURE_WEIGHTS=$(FIXTURE_WEIGHTS) TESTBED_COMPILE_CACHE=$(TESTBED_COMPILE_CACHE) \
	RESULTS_DIR=$(abspath $(RESULTS_DIR)) HOST_PORT=$(PORT) HOST_UID=$$(id -u) \
	HOST_GID=$$(id -g) ROUTER_PROJECT=$(PROJECT) scripts/compose-root.sh $(PROJECT) $(COMPOSE_FILES) && docker compose
# Before Compose builds: the torch +cpu wheel (CPU) and the base images, present, built
# locally (Debian) or pulled; else one line naming the image and the setting to change.
PREPARE_BUILD = if [ "$(RESOLVED_PLATFORM)" = cpu ]; then scripts/cpu-wheels.sh .build/wheels; fi \
	&& set -o pipefail && $(COMPOSE) config --format json \
	| TESTBED=$(TESTBED) python3 scripts/ensure-base-images.py $(RESOLVED_PLATFORM)
# Native runs read the secrets' files directly (the settings' own *_FILE variables).
export API_KEY_FILE MODELSCOPE_TOKEN_FILE METRICS_KEY_FILE
# The weights the native server serves (the fixture when it fell back), for the in-process benches.
NATIVE_WEIGHTS = $$($(PY) -c 'import pathlib, entrypoint.state as s; \
	print(s.StateDir(pathlib.Path("$(NATIVE_STATE_DIR)")).state()["model_path"])')

# The documented targets of one make file, a line each.
targets_of = grep -E '^\.PHONY: [a-z0-9-]+ \#\# ' $(1) | sed -E 's/^\.PHONY: ([a-z0-9-]+) \#\# (.*)/  \1\t\2/' | expand -t 20

.PHONY: help ## print the targets: the operator's here, the developer's from dev.mk
help:
	@echo "Operator targets:"
	@$(call targets_of,Makefile)
	@echo; echo "Development targets (dev.mk: tests, benchmarks, lint, docs, the fixture):"
	@$(call targets_of,dev.mk)

.PHONY: venv ## make the project venv (vLLM CPU build, cached under BUNDLE_CACHE)
venv:
	@scripts/bootstrap-venv.sh $(VENV) >/dev/null

.PHONY: build ## build the image for PLATFORM (cpu: Debian + vLLM CPU; npu: on the vllm-ascend image)
build:
	@$(PREPARE_BUILD)
	$(COMPOSE) build serve

.PHONY: image-warm ## build the CPU image with warmed compile caches for the model it serves (WARM_WEIGHTS, WARM_ISAS)
image-warm: venv $(if $(filter 1,$(TESTBED)),fixture)
	@[ "$(RESOLVED_PLATFORM)" = cpu ] || { echo "error: PLATFORM=$(RESOLVED_PLATFORM) has no warm image;" \
		"allowed: cpu (vllm-ascend keeps its graph cache on the volume)" >&2; exit 2; }
	@[ -d "$(WARM_WEIGHTS)" ] || { echo "error: WARM_WEIGHTS='$(WARM_WEIGHTS)' is not a folder; allowed: the host" \
		"folder of the model to warm on (e.g. modelscope download --model MODEL_ID --local_dir DIR)" >&2; exit 2; }
	@$(MAKE) --no-print-directory build WARM=0
	@$(MAKE) --no-print-directory warm-plans WARM=0
	@$(MAKE) --no-print-directory build WARM=1

# The serve commands the warm image's build starts, rendered by the plain image (scripts/warm-plans.py).
warm-plans:
	@$(COMPOSE) version >/dev/null && $(PY) scripts/warm-plans.py .build/warm "$(WARM_WEIGHTS)" \
		"$(WARM_ISAS)" docker compose run --rm --no-deps -T serve render --format json --model-path /warm/weights

# The project venv only where the host runs the bundle itself: the Docker path needs Docker,
# Compose, make and python3's standard library (README: Prerequisites).
NATIVE_VENV = $(if $(filter native,$(RESOLVED_ENGINE)),venv)
# After a Docker start that did not become healthy: the supervisor's reason, the `error:`
# lines of its last attempts in the container's log (entrypoint/errors.py prints them).
START_FAILED = { echo "the server did not become healthy:" >&2; $(COMPOSE) logs --no-log-prefix --tail 200 serve \
	2>&1 | grep -E '^error: ' | awk '!seen[$$0]++' | tail -n 5 >&2; echo "(full log: make logs)" >&2; exit 1; }

.PHONY: up ## serve the default model and return once it is healthy (Docker if an engine answers, else native)
up: $(NATIVE_VENV) $(if $(filter 1,$(TESTBED)),fixture) $(if $(filter 1,$(WARM)),image-warm)
ifeq ($(RESOLVED_ENGINE),docker)
	@$(PREPARE_BUILD)
	@$(if $(filter 1,$(TESTBED)),scripts/testbed/compile-cache-dir.sh $(TESTBED_COMPILE_CACHE) \
		$(if $(filter accelerator,$(RUNTIME)),0,1000))
	@$(if $(NPU),$(COMPOSE) build serve && $(NPU_COUNT))
	$(COMPOSE) up --detach --build serve
	@# The start's phases live (plain lines when not on a terminal); Docker's health decides below,
	@# on the same container (an image rebuilt meanwhile must not replace a started server).
	@# watch exits 2 or 3 when the start failed for good (a bad setting; FAILED_START=hold).
	@rc=0; $(COMPOSE) exec $$([ -t 1 ] || echo -T) serve python3 -m entrypoint watch 2>/dev/null || rc=$$?; \
		[ $$rc -lt 2 ] || [ $$rc -gt 3 ] || $(START_FAILED)
	@$(COMPOSE) up --detach --wait --no-recreate serve $(if $(ROUTED),router) \
		|| { $(if $(ROUTED),$(COMPOSE) logs --no-log-prefix --tail 1 router >&2;) $(START_FAILED) }
	@echo "healthy: http://127.0.0.1:$(PORT)  (try: make smoke; stop: make down; logs: make logs)"
else
	@PLATFORM=$(PLATFORM) PORT=$(PORT) ENV_FILE=$(ENV_FILE) scripts/native.sh up
endif

.PHONY: rollout ## replace the `serve` replicas one at a time behind the router (rebuilt image, current settings), dropping no request
rollout: $(if $(filter 1,$(TESTBED)),fixture)
ifeq ($(RESOLVED_ENGINE),docker)
	@$(PREPARE_BUILD)
	$(COMPOSE) build serve
	@$(NPU_COUNT)
	@# The root compose.yaml the line above wrote names this deployment's files and values.
	@python3 scripts/rollout.py $(ROLLOUT_ARGS)
else
	@echo "make rollout needs Docker (ENGINE=docker) and REPLICAS=2 or more behind the router" >&2; exit 2
endif

.PHONY: down ## stop the server started by `make up`
down:
ifeq ($(RESOLVED_ENGINE),docker)
	$(COMPOSE) --profile monitoring down --remove-orphans
else
	@scripts/native.sh down
endif

.PHONY: logs ## follow the server's log
logs:
ifeq ($(RESOLVED_ENGINE),docker)
	$(COMPOSE) logs --follow serve
else
	@scripts/native.sh logs
endif

.PHONY: monitor ## start Prometheus (Compose profile `monitoring`) scraping the server, with the bundle's rules; print its URL
monitor:
ifeq ($(RESOLVED_ENGINE),docker)
	@$(if $(filter 1,$(TESTBED)),scripts/testbed/base-image.sh debian:bookworm-slim)
	$(COMPOSE) --profile monitoring up --detach --build prometheus
	@echo "Prometheus: http://127.0.0.1:$(PROMETHEUS_PORT)  (alerts: /alerts, rules: /rules; dashboard for Grafana: observability/dashboards/ascend-serve.json)"
else
	@echo "make monitor needs Docker (ENGINE=docker); no engine answers here" >&2; exit 2
endif

.PHONY: smoke ## run the guide's smoke checks against the running server
smoke:
ifeq ($(RESOLVED_ENGINE),docker)
	$(COMPOSE) run --rm smoke
else
	@$(MAKE) --no-print-directory venv
	@PORT=$(PORT) STATE_DIR=$(NATIVE_STATE_DIR) $(PY) -m entrypoint $(if $(ENV_FILE),--env-file $(ENV_FILE)) smoke
endif

.PHONY: bench ## the guide's performance tables (throughput, online, latency, sweep) against the server -> RESULTS_DIR
bench:
ifeq ($(RESOLVED_ENGINE),docker)
	@mkdir -p $(RESULTS_DIR)
	$(COMPOSE) run --rm bench $(BENCH_ARGS)
else
	@$(MAKE) --no-print-directory venv
	@PORT=$(PORT) STATE_DIR=$(NATIVE_STATE_DIR) $(PY) eval/perf_eval.py --model "$(NATIVE_WEIGHTS)" \
		--results-dir $(RESULTS_DIR) $(BENCH_ARGS)
endif

.PHONY: eval ## the guide's accuracy checks (determinism, tasks, numeric parity) against the server -> RESULTS_DIR
eval:
ifeq ($(RESOLVED_ENGINE),docker)
	@mkdir -p $(RESULTS_DIR)
	$(COMPOSE) run --rm eval $(EVAL_ARGS)
else
	@$(MAKE) --no-print-directory venv
	@PORT=$(PORT) STATE_DIR=$(NATIVE_STATE_DIR) $(PY) eval/accuracy_eval.py --model "$(NATIVE_WEIGHTS)" \
		--results-dir $(RESULTS_DIR) $(EVAL_ARGS)
endif

.PHONY: render ## print the serve command (Docker: the image's, built first; ENGINE=native: the venv's, any PLATFORM)
render: $(NATIVE_VENV)
ifeq ($(RESOLVED_ENGINE),docker)
	@$(MAKE) --no-print-directory build >&2
	@$(COMPOSE) run --rm --no-deps -T serve render --format $(RENDER_FORMAT)
else
	@PLATFORM=$(PLATFORM) PORT=$(PORT) $(PY) -m entrypoint $(if $(ENV_FILE),--env-file $(ENV_FILE)) render --format $(RENDER_FORMAT)
endif

.PHONY: status ## the three probes' lines (startup, ready, live) for the server `make up` started
status:
ifeq ($(RESOLVED_ENGINE),docker)
	@rc=0; for probe in startup ready live; do $(COMPOSE) exec -T serve python3 -m healthcheck $$probe || rc=1; done; exit $$rc
else
	@rc=0; for probe in startup ready live; do python3 -m healthcheck $$probe --state-dir $(NATIVE_STATE_DIR) || rc=1; done; \
		exit $$rc
endif

.PHONY: k8s-render ## print the Kubernetes manifests for PLATFORM (npu, cpu or cuda), offline
k8s-render: venv
	@$(VENV)/bin/kubectl kustomize $(K8S_OVERLAY)

.PHONY: clean ## remove the venv link and run state (the cache under BUNDLE_CACHE stays)
clean:
	rm -rf $(VENV) .run .build .pytest_cache

# Tests, benchmarks, lint, docs and the fixture: the developer's targets.
include dev.mk
