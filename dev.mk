# The developer's targets (tests, benchmarks, lint, docs, the test-bed fixture), included by the
# Makefile, whose variables they use. `make help` lists them apart from the operator's.

.PHONY: fixture ## build the real Gemma 3 270M test-bed weights (cached under BUNDLE_CACHE)
fixture: venv
	@$(PY) scripts/testbed/build_fixture_model.py

.PHONY: test ## run every test layer (what CI runs)
# The integration layer's vLLM: `guide`, the guide's 0.18.0 (the vllm-ascend v0.18.0rc1
# image's, in a venv built as the accelerator image is; 4 GB of wheels the first time), or
# `venv`, the project venv's newest. The container layer's CPU image carries the newest.
TEST_VLLM ?= guide
test: test-unit test-integration test-container

.PHONY: target-vllm ## the vLLM of each supported image, for parsing renders (cached under BUNDLE_CACHE)
target-vllm: venv
	@for version in $$($(PY) -c 'from entrypoint.default_layers import SUPPORTED_IMAGES as i; print(*sorted({x.vllm for x in i.values()}))'); do \
		scripts/testbed/target-vllm.sh $$version >/dev/null; done

.PHONY: test-unit ## fast tests: settings, rendering, probes, conformance of every render to the target vLLMs
test-unit: venv target-vllm
	@scripts/testbed/pytest-layer.sh unit $(PYTEST_ARGS)

.PHONY: test-integration ## real vLLM on the CPU (the guide's 0.18.0; TEST_VLLM=venv: the newest) with the fixture model and a loopback hub
test-integration: venv fixture
	@LAYER_VLLM=$(TEST_VLLM) scripts/testbed/pytest-layer.sh integration $(PYTEST_ARGS)

.PHONY: test-container ## real Docker engine: build the CPU image, make up, compose smoke (starts the engine)
test-container: venv fixture
	@eval "$$(scripts/testbed/docker-engine.sh start)" && scripts/testbed/base-image.sh debian:bookworm-slim \
		&& scripts/testbed/pytest-layer.sh container $(PYTEST_ARGS)

.PHONY: test-arm64 ## arm64 by emulation: stand-in base, accelerator stage for linux/arm64, NPU render, parser, probes, one completion -> bench/results/arm64.md
test-arm64: venv target-vllm fixture
	@eval "$$(scripts/testbed/docker-engine.sh start)" && $(PY) bench/arm64.py

.PHONY: bench-startup ## time-to-ready of `entrypoint serve` vs plain vLLM, and probe latency
bench-startup: venv fixture
	@$(PY) bench/startup.py

.PHONY: bench-image ## image size, build times, container vs native time-to-healthy (starts the engine)
bench-image: venv fixture
	@eval "$$(scripts/testbed/docker-engine.sh start)" && scripts/testbed/base-image.sh debian:bookworm-slim \
		&& scripts/cpu-wheels.sh .build/wheels && $(PY) bench/image.py

.PHONY: bench-warm-image ## a first container start on a fresh volume: plain image vs `make image-warm`'s, this CPU and AVX2
bench-warm-image: venv fixture
	@eval "$$(scripts/testbed/docker-engine.sh start)" && scripts/testbed/base-image.sh debian:bookworm-slim \
		&& $(MAKE) --no-print-directory image-warm PLATFORM=cpu ENGINE=docker TESTBED=1 && $(PY) bench/warm_image.py

.PHONY: bench-scale ## two replicas behind the router vs one direct, a killed, hung and rolled-out replica under load (starts the engine)
bench-scale: venv fixture
	@eval "$$(scripts/testbed/docker-engine.sh start)" && scripts/testbed/base-image.sh debian:bookworm-slim \
		&& $(PY) bench/scale.py

# Kubernetes: the overlay for PLATFORM; auto means npu, the default platform (the cluster decides, not this machine).
K8S_OVERLAY = deploy/kubernetes/overlays/$(if $(filter auto,$(PLATFORM)),npu,$(PLATFORM))
K8S_VERSION ?= 1.30.0

.PHONY: bench-profiles ## the CPU profile against bare vLLM and other candidates, cold/warm starts, roofline
bench-profiles: venv fixture
	@$(PY) bench/profiles.py

.PHONY: bench-start ## time to ready of the CPU default against each start lever, every start split into phases
bench-start: venv fixture
	@$(PY) bench/start.py

.PHONY: bench-monitoring ## a real Prometheus over a short load and a stopped engine -> bench/results/monitoring.png
bench-monitoring: venv fixture
	@$(PY) bench/monitoring.py

.PHONY: bench-overload ## one server and 2 routed replicas at 1x-8x capacity, admission off/on (needs Docker) -> bench/results/overload.md
bench-overload: venv fixture
	@$(PY) bench/overload.py

.PHONY: bench-routing ## router policy x prefix caching on random, shared-system-prompt and multi-turn chats, 2 replicas (starts the engine) -> bench/results/routing.md
bench-routing: venv fixture
	@eval "$$(scripts/testbed/docker-engine.sh start)" && scripts/testbed/base-image.sh debian:bookworm-slim \
		&& $(PY) bench/routing.py

.PHONY: bench-reliability ## faults, bad inputs, load with probes (c=32) and a secret scan -> bench/reliability.md
bench-reliability: venv fixture
	@$(PY) bench/reliability.py

.PHONY: k8s-validate ## validate every Kubernetes overlay offline (K8S_VERSION schemas, strict) and lint deploy/
k8s-validate: venv
	@set -o pipefail; for overlay in overlays/npu overlays/cpu overlays/cuda examples/cpu-with-secrets; do \
		$(VENV)/bin/kubectl kustomize deploy/kubernetes/$$overlay \
			| $(VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION) - || exit 1; \
	done
	@$(VENV)/bin/yamllint -s deploy
	@echo "deploy/kubernetes: every overlay and example valid against Kubernetes $(K8S_VERSION) (strict)"

.PHONY: lint ## ruff on the code, yamllint on the YAML
lint: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/yamllint -s templates compose deploy observability tests/unit/promtool tests/unit/schemas
	@$(VENV)/bin/hadolint Dockerfile observability/prometheus/Dockerfile compose/router/Dockerfile
	@shellcheck -x scripts/*.sh scripts/testbed/*.sh compose/router/start.sh .ci/run

.PHONY: docs-check ## build docs/ with MkDocs (own venv under BUNDLE_CACHE); fails on a broken link
docs-check:
	@scripts/docs-check.sh

.PHONY: docs ## regenerate the settings reference (docs/configuration.md), compose/.env.example and the Kubernetes settings.env
docs: venv
	@$(PY) scripts/regen-docs.py
