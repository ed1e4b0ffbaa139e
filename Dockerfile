# ascend-serve-bundle image: the supervisor (entrypoint/), the probes (healthcheck/) and
# the serve templates on top of a vLLM runtime. RUNTIME picks the runtime stage; the
# bundle stage on top of it is the same for every image.
#
#   NPU (default):  docker build -t ascend-serve-bundle:npu .
#                   BASE_IMAGE = the deployment guide's vllm-ascend image
#   CUDA:           docker build --build-arg BASE_IMAGE=docker.io/vllm/vllm-openai:v0.18.0 -t ascend-serve-bundle:cuda .
#   CPU (test bed): docker build --build-arg RUNTIME=cpu -t ascend-serve-bundle:cpu \
#                     --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt .
#                   torch +cpu from TORCH_INDEX_URL (PyTorch's CPU index), or .build/wheels
#                   (`scripts/cpu-wheels.sh .build/wheels` with TORCH_FIND_LINKS set)
#
# REGISTRY_MIRROR is put in front of every base image name (e.g. m.daocloud.io/), so
# base names are fully qualified. PIP_INDEX_URL, when given, is pip's index in the build.
# Optional build secret `cacert`: an extra CA bundle for pip behind a TLS-inspecting proxy.
ARG REGISTRY_MIRROR=
# generated:begin default-image (make docs: templates/images.yaml's first image and hardware)
ARG BASE_IMAGE=quay.io/ascend/vllm-ascend:v0.18.0rc1
ARG IMAGE_VERSION=v0.18.0rc1
# generated:end default-image
ARG CPU_BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG RUNTIME=accelerator

# ---------------------------------------------------------------------------------------
# tini for every image: Debian's static build runs on any base of the same architecture
# (the vllm-ascend image is Ubuntu or openEuler).
FROM ${REGISTRY_MIRROR}${CPU_BASE_IMAGE} AS tini
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && /usr/bin/tini-static --version

# ---------------------------------------------------------------------------------------
# NPU / CUDA: an image that already has vLLM (vllm-ascend or vllm-openai). Only the
# bundle's own libraries are added, resolved against the base's serving stack pinned as
# installed (scripts/install-on-base.py), so nothing vLLM needs moves.
FROM ${REGISTRY_MIRROR}${BASE_IMAGE} AS accelerator-runtime
ARG BASE_IMAGE
ARG PIP_INDEX_URL
# The vllm-ascend release BASE_IMAGE is (templates/images.yaml; `make build` sets both from
# IMAGE_VERSION and NPU_HARDWARE): the entrypoint inside renders for the vLLM it carries.
ARG IMAGE_VERSION
LABEL org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY pyproject.toml scripts/install-on-base.py /tmp/bundle/
RUN --mount=type=secret,id=cacert \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi \
    && python3 /tmp/bundle/install-on-base.py /tmp/bundle/pyproject.toml verification \
    && rm -rf /tmp/bundle \
    && python3 -c "import jinja2, pydantic, tenacity, modelscope, prometheus_client"
# Runs as root: the Ascend device nodes (/dev/davinci*) and driver mounts are owned by
# root or HwHiAiUser on the host, and vllm-ascend's own image runs as root.
ENV BUNDLE_USER=root IMAGE_VERSION=${IMAGE_VERSION}

# ---------------------------------------------------------------------------------------
# CPU: Debian + vLLM's CPU build, for machines without an accelerator (the test bed).
FROM ${REGISTRY_MIRROR}${CPU_BASE_IMAGE} AS cpu-runtime
ARG CPU_BASE_IMAGE
ARG PIP_INDEX_URL
LABEL org.opencontainers.image.base.name="${CPU_BASE_IMAGE}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# libnuma1: vLLM CPU's thread binding; g++/libc6-dev/python3-dev: torch inductor
# compiles kernels at startup.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv python3-dev g++ libc6-dev libnuma1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 --version
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PLATFORM=cpu
# torch's +cpu build: from TORCH_INDEX_URL (empty: PyTorch's CPU wheel index), or from the
# build context's .build/wheels when `scripts/cpu-wheels.sh` put it there (TORCH_FIND_LINKS).
ARG TORCH_INDEX_URL
# Dependencies in their own layer (a code change rebuilds in seconds): the lock of the
# image's architecture, installed as the project venv is (scripts/install-lock.sh).
COPY requirements/lock-runtime-*.txt scripts/install-lock.sh /tmp/lock/
RUN --mount=type=secret,id=cacert \
    --mount=type=bind,source=.build/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi \
    && if ls /wheels/torch-*.whl >/dev/null 2>&1; then export TORCH_FIND_LINKS=/wheels; fi \
    && python3 -m venv /opt/venv \
    && /tmp/lock/install-lock.sh python "/tmp/lock/lock-runtime-$(uname -m).txt" \
    && rm -rf /tmp/lock \
    && python -c "import vllm, modelscope, jinja2, pydantic, tenacity, prometheus_client"
# A fixed non-root user; the cache volume is created owned by it, so a named volume
# starts writable for it.
# generated:begin cache-owner (make docs: entrypoint/resolver.py's CONTAINER_CACHE_DIR)
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin serve \
    && mkdir -p /models /opt/bundle \
    && chown serve:serve /models
# generated:end cache-owner
ENV BUNDLE_USER=1000:1000

# ---------------------------------------------------------------------------------------
# The bundle on the chosen runtime: what every image carries.
FROM ${RUNTIME}-runtime AS bundle
ARG VERSION=0.1.0
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="ascend-serve-bundle" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=tini /usr/bin/tini-static /usr/local/bin/tini
WORKDIR /opt/bundle
COPY entrypoint ./entrypoint
COPY healthcheck ./healthcheck
COPY templates ./templates
# The deployment guide's verification tools (compose `bench` / `eval`, inference.py).
COPY verification ./verification
COPY eval ./eval
COPY inference.py ./
# The bundle's metrics report it (ascend_serve_build_info's image_version).
RUN printf '%s\n' "${VERSION}" > VERSION
ENV PYTHONPATH=/opt/bundle PYTHONUNBUFFERED=1
# generated:begin container-cache (make docs: entrypoint/resolver.py's CONTAINER_CACHE_DIR)
ENV MODEL_CACHE_DIR=/models MODELSCOPE_CACHE=/models/modelscope
VOLUME ["/models"]
# generated:end container-cache
# The runtime stage chose the user: root on NPU/CUDA, uid 1000 on CPU.
# hadolint ignore=DL3066
USER ${BUNDLE_USER}
# 8000: vLLM's API and /metrics; 9464: the supervisor's own metrics (METRICS_PORT).
EXPOSE 8000 9464
# The start period covers a first download and graph warm-up; failures in it don't count.
HEALTHCHECK --interval=10s --timeout=10s --start-period=1800s --retries=3 \
    CMD ["python3", "-m", "healthcheck", "ready"]
# tini is PID 1 and reaps vLLM's orphaned workers (Kubernetes has no `init: true`);
# SIGTERM reaches the supervisor, which forwards it to vLLM with a grace period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "python3", "-m", "entrypoint"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------
# `make image-warm`: the CPU image with Inductor's compile cache for its default model, one
# per CPU instruction set planned, so a first start on a fresh volume is a warm start
# (entrypoint/shipped_cache.py copies the one for the host's ISA). vLLM starts once per plan
# (`entrypoint render --format json`, in .build/warm/plans) on the weights in .build/warm/weights
# (scripts/warm-plans.py). This stage sees only the runtime, the plans and the weights, so a
# code change to the bundle does not warm again. vLLM's processes share tensors through
# /dev/shm, which a build step has only 64 MB of.
FROM cpu-runtime AS warm-cache
RUN --mount=type=bind,source=.build/warm,target=/warm \
    --mount=type=tmpfs,target=/tmp \
    --mount=type=tmpfs,target=/dev/shm \
    python3 /warm/warm-compile-cache.py /warm/plans /compile-cache

FROM bundle AS bundle-warm
COPY --from=warm-cache /compile-cache /opt/bundle/compile-cache
