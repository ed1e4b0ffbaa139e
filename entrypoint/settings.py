"""The settings object: every knob of the bundle as a field, its single-field validation and
the properties computed from it.

Each field is one setting: its alias is the environment variable, its default the built-in
layer, and it declares what it becomes (a vLLM flag, an exported variable). The resolver
(`entrypoint.resolver`) is the one way to build a ``Settings``: it puts the other layers on
top, derives what is computed from other settings and checks the rules between them
(`entrypoint.rules`). Everything downstream takes a ``Settings``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

from entrypoint import value_grammar
from entrypoint.api_keys import KEY_FILE_ALLOWED
from entrypoint.default_layers import DEFAULT_IMAGE
from entrypoint.scrub import scrub_url
from entrypoint.startup_errors import KUBERNETES_TERMINATION_LOG
from entrypoint.state import DEFAULT_STATE_DIR, NodeRole
from entrypoint.vllm_forms import ACCELERATORS, EXPORTED, EngineFlag, Export, digit, fraction

Platform = Literal["npu", "cuda", "cpu"]
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "ascend-serve"
BOOLEAN = "true or false"
# Secrets: VAR or VAR_FILE (a Docker/Kubernetes secret file), as docker-library images do.
SECRET_FILES: dict[str, str] = {"API_KEY_FILE": "API_KEY", "MODELSCOPE_TOKEN_FILE": "MODELSCOPE_TOKEN"}
SECRET_FIELDS: frozenset[str] = frozenset(SECRET_FILES.values())
SECRET_TEXT = re.compile(r"[\x21-\x7e]+")  # fits an HTTP header: printable ASCII, no spaces
SECRET_ALLOWED = "printable ASCII without spaces"
SECRET_FILE_ALLOWED = "a readable regular file holding the value (one trailing newline is ignored)"
# Ceilings for seconds: beyond them a value is a typo, and a timer that large overflows.
HOUR, DAY, WEEK = 3600, 86400, 7 * 86400
IFACE = re.compile(r"[A-Za-z0-9_.:-]{1,15}")  # a Linux network interface name (IFNAMSIZ - 1)
URL_FIELDS = frozenset({"MODELSCOPE_ENDPOINT"})  # shown with their credentials masked
# Free text that may carry a secret (`--api-key K`, a token in a flag's value): an error about
# it names the variable and the problem, never the value.
UNSHOWN_FIELDS = frozenset({"EXTRA_ARGS"})
SHOWN_VALUE_MAX = 120  # characters of a bad value an error line quotes


def setting(default: Any, doc: str, allowed: str, *, alias: str, flag: EngineFlag | None = None,
            export: Export | None = None, **constraints: Any) -> Any:
    """A field whose alias is its environment variable; `allowed` feeds error lines and the settings
    reference; `flag` and `export` are what it becomes for vLLM (its argv flag, its exported variable)."""
    forms = {key: replace(form, setting=alias) for key, form in (("flag", flag), ("export", export)) if form}
    return Field(default, description=doc, alias=alias, json_schema_extra={"allowed": allowed, **forms},
                 **constraints)


def selector(default: str, doc: str, allowed: str, *, alias: str) -> Any:
    """A field that picks a layer of defaults (a platform, variant, image, profile, the CPU tuning):
    the resolver reads it before the layers, and the field echoes what was picked."""
    return Field(default, description=doc, alias=alias, json_schema_extra={"allowed": allowed, "selector": True})


def declared(field: FieldInfo, key: str) -> Any:
    """What a field declared beside its value: "allowed", "flag", "export" or "selector"."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return extra.get(key)


class Settings(BaseModel):
    """Every setting the bundle reads; field aliases are the environment variable names."""

    # allow_inf_nan: a YAML `.inf` or a JSON `Infinity` is no number of seconds.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, allow_inf_nan=False)

    # --- where and what to serve ---------------------------------------------------------
    platform: Platform = selector("auto", "Accelerator: auto detects an Ascend device, then CUDA, else CPU.",
                                  "auto, npu, cuda or cpu", alias="PLATFORM")
    model_id: str = setting("google/gemma-3-270m-it", "Model to serve, as owner/name on the hub.",
                            "owner/name", alias="MODEL_ID")
    model_revision: str = setting("master", "Hub revision (branch, tag or commit) to pin.",
                                  "a branch, tag or commit name", alias="MODEL_REVISION", min_length=1)
    model_source: str = setting("modelscope", "Where weights come from: the ModelScope hub or a local folder.",
                                "modelscope or an absolute path to a model folder", alias="MODEL_SOURCE")
    model_cache_dir: Path = setting(DEFAULT_CACHE_DIR, "One folder for weights, hub caches and vLLM's compile cache.",
                                    "a writable directory", alias="MODEL_CACHE_DIR")
    compile_cache_dir: Path | None = setting(None, "vLLM's compile cache (VLLM_CACHE_ROOT; default: "
                                             "MODEL_CACHE_DIR/vllm, so restarts are warm).", "a writable directory",
                                             alias="COMPILE_CACHE_DIR")
    shipped_compile_cache_dir: Path = setting(
        Path("/opt/bundle/compile-cache"), "On CPU, where an image built with `make image-warm` keeps its warmed "
        "compile caches, one per CPU instruction set; a first start copies the one for this CPU into an empty "
        "COMPILE_CACHE_DIR.", "a directory (absent: nothing is copied)", alias="SHIPPED_COMPILE_CACHE")
    model_profile: str = selector("", "Model profile in templates/models (default: the one naming MODEL_ID, else "
                                  "the one named after the model).",
                                  "a profile name from templates/models", alias="MODEL_PROFILE")
    fallback_model_dir: Path | None = setting(None, "Weights to serve, with a loud warning, when the hub is "
                                              "unreachable and the cache is empty.",
                                              "an existing model folder", alias="FALLBACK_MODEL_DIR")
    modelscope_endpoint: str = setting("", "ModelScope hub URL (default: the client's own).",
                                       "an http(s) URL", alias="MODELSCOPE_ENDPOINT")

    # --- secrets: VAR or VAR_FILE, never both; shown only as *** -------------------------
    api_key: SecretStr | None = setting(None, "API key clients must send as `Authorization: Bearer <key>` on every "
                                        "route but /health and /metrics (entrypoint/api_guard.py's open list; vLLM "
                                        "gets it in its environment, never on its command line). Prefer "
                                        "API_KEY_FILE.", SECRET_ALLOWED, alias="API_KEY")
    api_key_file: Path | None = setting(None, "File holding the API keys, one per line (a Docker or Kubernetes "
                                        "secret): each one is valid, and a changed file takes effect within "
                                        "seconds, without a restart.", KEY_FILE_ALLOWED, alias="API_KEY_FILE")
    metrics_need_key: bool = setting(False, "Put vLLM's /metrics behind the API key too (the shipped Prometheus "
                                     "configs then send it); false: it stays open for scrapers.", BOOLEAN,
                                     alias="METRICS_NEED_KEY")
    modelscope_token: SecretStr | None = setting(None, "ModelScope access token, for private models. Prefer "
                                                 "MODELSCOPE_TOKEN_FILE.",
                                                 SECRET_ALLOWED, alias="MODELSCOPE_TOKEN")
    modelscope_token_file: Path | None = setting(None, "File holding MODELSCOPE_TOKEN (a Docker or "
                                                 "Kubernetes secret).", SECRET_FILE_ALLOWED,
                                                 alias="MODELSCOPE_TOKEN_FILE")

    # --- vllm serve flags, defaults as in the guide ---------------------------------------
    host: str = setting("0.0.0.0", "--host", "an IP address", alias="HOST",
                        flag=EngineFlag("--host", "value", None))
    port: int = setting(8000, "--port", "an integer from 1 to 65535", alias="PORT",
                        flag=EngineFlag("--port", "value", None), ge=1, le=65535)
    data_parallel_size: int = setting(1, "--data-parallel-size", "an integer >= 1", alias="DATA_PARALLEL_SIZE",
                                      flag=EngineFlag("--data-parallel-size", "value", "data_parallel_size", ("-dp",)),
                                      ge=1)
    tensor_parallel_size: int = setting(1, "--tensor-parallel-size", "an integer >= 1",
                                        alias="TENSOR_PARALLEL_SIZE",
                                        flag=EngineFlag("--tensor-parallel-size", "value", "tensor_parallel_size",
                                                        ("-tp",)), ge=1)
    pipeline_parallel_size: int | None = setting(
        None, "--pipeline-parallel-size: the model's layers split into this many stages (unset: vLLM's default, "
        "1). With LWS_GROUP_SIZE, TENSOR_PARALLEL_SIZE x PIPELINE_PARALLEL_SIZE cards span the group's nodes.",
        "an integer >= 1", alias="PIPELINE_PARALLEL_SIZE",
        flag=EngineFlag("--pipeline-parallel-size", "optional", "pipeline_parallel_size", ("-pp",)), ge=1)
    distributed_executor_backend: Literal["mp", "ray", "uni"] | None = setting(
        None, "--distributed-executor-backend (unset: vLLM's choice; mp, vLLM's own processes, when "
        "LWS_GROUP_SIZE is set).", "mp, ray or uni", alias="DISTRIBUTED_EXECUTOR_BACKEND",
        flag=EngineFlag("--distributed-executor-backend", "optional", "distributed_executor_backend"))
    # One vLLM across a LeaderWorkerSet group's nodes (vllm-ascend's pipeline-parallel guide, multi-node
    # with the mp backend); LWS sets the first three in every pod, unset outside LWS, so nothing renders.
    lws_group_size: int | None = setting(
        None, "Pods in this LeaderWorkerSet group, one vLLM across them (LWS sets it; unset: one node). Rendered "
        "as --nnodes, with the mp backend.", "an integer >= 2 (one node needs no LeaderWorkerSet)",
        alias="LWS_GROUP_SIZE",
        flag=EngineFlag("--nnodes", "optional", "nnodes", ("-n",)), ge=2)
    lws_worker_index: int | None = setting(
        None, "This pod's place in its group (LWS sets it): 0 is the leader, which serves the API; the others "
        "run vLLM headless. Rendered as --node-rank.", "an integer >= 0, below LWS_GROUP_SIZE",
        alias="LWS_WORKER_INDEX",
        flag=EngineFlag("--node-rank", "optional", "node_rank", ("-r",)), ge=0)
    lws_leader_address: str | None = setting(
        None, "The group leader's address (LWS sets it): the nodes meet there (--master-addr) and workers count "
        "as joined once the leader serves on PORT.", "a host name or IP address", alias="LWS_LEADER_ADDRESS",
        flag=EngineFlag("--master-addr", "optional", "master_addr"))
    multi_node_port: int | None = setting(
        None, "--master-port: the leader's port where the group's nodes set up torch.distributed (unset: "
        "vLLM's default, 29501).", "an integer from 1 to 65535", alias="MULTI_NODE_PORT",
        flag=EngineFlag("--master-port", "optional", "master_port"), ge=1, le=65535)
    seed: int = setting(1024, "--seed", "an integer >= 0", alias="SEED",
                        flag=EngineFlag("--seed", "value", "seed"), ge=0)
    # The name clients ask for: the API server's business, not the engine's.
    served_model_name: str = setting("", "Name clients use in requests (default: MODEL_ID's name part).",
                                     "a non-empty name", alias="SERVED_MODEL_NAME",
                                     flag=EngineFlag("--served-model-name", "value", None))
    max_num_seqs: int = setting(32, "--max-num-seqs", "an integer >= 1", alias="MAX_NUM_SEQS",
                                flag=EngineFlag("--max-num-seqs", "value", "max_num_seqs"), ge=1)
    max_model_len: int = setting(32768, "--max-model-len", "an integer >= 1", alias="MAX_MODEL_LEN",
                                 flag=EngineFlag("--max-model-len", "value", "max_model_len"), ge=1)
    max_num_batched_tokens: int = setting(4096, "--max-num-batched-tokens", "an integer >= MAX_NUM_SEQS",
                                          alias="MAX_NUM_BATCHED_TOKENS",
                                          flag=EngineFlag("--max-num-batched-tokens", "value",
                                                          "max_num_batched_tokens"), ge=1)
    trust_remote_code: bool = setting(True, "--trust-remote-code", BOOLEAN, alias="TRUST_REMOTE_CODE",
                                      flag=EngineFlag("--trust-remote-code", "present", "trust_remote_code"))
    gpu_memory_utilization: float = setting(0.90, "--gpu-memory-utilization", "a number > 0 and <= 1",
                                            alias="GPU_MEMORY_UTILIZATION",
                                            flag=EngineFlag("--gpu-memory-utilization", "value",
                                                            "gpu_memory_utilization", ("--device-memory-utilization",),
                                                            ACCELERATORS, fraction), gt=0, le=1)
    enable_prefix_caching: bool = setting(False, "--enable-prefix-caching / --no-enable-prefix-caching",
                                          BOOLEAN, alias="ENABLE_PREFIX_CACHING",
                                          flag=EngineFlag("--enable-prefix-caching", "switch", "enable_prefix_caching"))
    behind_router: bool = setting(False, "One of several replicas behind vLLM's router (compose/router.yaml and the "
                                  "Kubernetes router component set it): prefix caching defaults to on.", BOOLEAN,
                                  alias="BEHIND_ROUTER")
    compilation_config: str | None = setting('{"cudagraph_mode":"FULL_DECODE_ONLY"}', "--compilation-config",
                                             "a JSON object", alias="COMPILATION_CONFIG",
                                             flag=EngineFlag("--compilation-config", "json", "compilation_config",
                                                             ("-cc",)))
    additional_config: str | None = setting('{"enable_cpu_binding":true}', "--additional-config (vllm-ascend)",
                                            "a JSON object", alias="ADDITIONAL_CONFIG",
                                            flag=EngineFlag("--additional-config", "json", "additional_config"))
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = setting(
        None, "--dtype (unset: vLLM's default)", "auto, bfloat16, float16 or float32", alias="DTYPE",
        flag=EngineFlag("--dtype", "optional", "dtype"))
    enforce_eager: bool | None = setting(None, "--enforce-eager (unset: vLLM's default)", BOOLEAN,
                                         alias="ENFORCE_EAGER",
                                         flag=EngineFlag("--enforce-eager", "switch", "enforce_eager"))
    enable_chunked_prefill: bool | None = setting(None, "--enable-chunked-prefill (unset: vLLM's default)",
                                                  BOOLEAN, alias="ENABLE_CHUNKED_PREFILL",
                                                  flag=EngineFlag("--enable-chunked-prefill", "switch",
                                                                  "enable_chunked_prefill"))
    shutdown_timeout: int | None = setting(None, "--shutdown-timeout: seconds vLLM drains accepted requests after "
                                           "SIGTERM (newer vLLM only; unset: vLLM's default, which aborts them).",
                                           "an integer >= 0, below STOP_GRACE_PERIOD", alias="SHUTDOWN_TIMEOUT",
                                           flag=EngineFlag("--shutdown-timeout", "optional", "shutdown_timeout"), ge=0)
    extra_args: str = setting("", "More vllm serve flags, shell-split and appended last. Flags the bundle "
                              "manages are refused: those a setting renders (set the setting), --host, --port, "
                              "--model, --served-model-name, --api-key (use API_KEY_FILE), --uds, --ssl-*, --config.",
                              "shell words with balanced quotes, no managed flag", alias="EXTRA_ARGS")

    # --- runtime environment of the server (platform defaults in templates/platforms) ---
    vllm_use_modelscope: bool | None = setting(None, "Exported to vLLM.", BOOLEAN, alias="VLLM_USE_MODELSCOPE",
                                               export=EXPORTED)
    pytorch_npu_alloc_conf: str | None = setting(None, "Exported to vLLM (NPU allocator).", "an allocator config",
                                                 alias="PYTORCH_NPU_ALLOC_CONF", export=EXPORTED)
    hccl_buffsize: int | None = setting(None, "Exported to vLLM (HCCL buffer, MB).", "an integer >= 1",
                                        alias="HCCL_BUFFSIZE", export=EXPORTED, ge=1)
    hccl_op_expansion_mode: Literal["AIV", "AI_CPU", "HOST"] | None = setting(
        None, "Exported to vLLM on NPU (where HCCL expands collectives; default AIV when TENSOR_PARALLEL_SIZE x "
        "DATA_PARALLEL_SIZE > 1, as vllm-ascend's multi-card tutorials set it).", "AIV, AI_CPU or HOST",
        alias="HCCL_OP_EXPANSION_MODE", export=EXPORTED)
    omp_proc_bind: Literal["true", "false", "close", "spread", "master", "primary"] | None = setting(
        None, "Exported to vLLM.", "true, false, close, spread, master or primary", alias="OMP_PROC_BIND",
        export=EXPORTED)
    omp_num_threads: int | None = setting(None, "Exported to vLLM.", "an integer >= 1", alias="OMP_NUM_THREADS",
                                          export=EXPORTED, ge=1)
    task_queue_enable: Literal[0, 1, 2] | None = setting(None, "Exported to vLLM (Ascend task queue).",
                                                         "0, 1 or 2", alias="TASK_QUEUE_ENABLE", export=EXPORTED)
    ascend_log_path: Path | None = setting(None, "Exported to vLLM (Ascend plog folder).", "a writable directory",
                                           alias="ASCEND_LOG_PATH", export=EXPORTED)
    vllm_cpu_kvcache_space: int | None = setting(None, "Exported to vLLM on CPU: KV cache size in GiB.",
                                                 "an integer >= 1", alias="VLLM_CPU_KVCACHE_SPACE", export=EXPORTED,
                                                 ge=1)
    vllm_cpu_omp_threads_bind: str | None = setting(
        None, "Exported to vLLM on CPU: the cores its OpenMP threads are pinned to (auto: one thread per "
        "physical core, minus the reserved ones; nobind: no pinning; ranks separated by |).",
        "auto, nobind or core lists such as 0-3 or 0,2,4-7", alias="VLLM_CPU_OMP_THREADS_BIND", export=EXPORTED)
    vllm_cpu_num_of_reserved_cpu: int | None = setting(
        None, "Exported to vLLM on CPU: cores left out of the OpenMP threads for the API server and scheduler.",
        "an integer >= 0", alias="VLLM_CPU_NUM_OF_RESERVED_CPU", export=EXPORTED, ge=0)
    torchinductor_cpp_march: str | None = setting(
        None, "Exported to torch on CPU: the -march Inductor compiles its kernels with (unset: native, every "
        "extension of this CPU; a portable level lets a compile cache built on another CPU of the same "
        "instruction set load here).", "a gcc -march value such as x86-64-v3, x86-64-v4 or native",
        alias="TORCHINDUCTOR_CPP_MARCH", export=EXPORTED, pattern=r"^[a-z0-9][a-z0-9.+_-]{0,63}$")
    vllm_use_aot_compile: bool | None = setting(
        None, "Exported to vLLM (as 1 or 0): keep torch.compile's graph as an AOT artifact in the compile cache "
        "(unset: vLLM's default, on); off: Dynamo traces again at each start and Inductor's kernel cache is "
        "reused.", BOOLEAN, alias="VLLM_USE_AOT_COMPILE", export=Export(digit))
    cpu_tuning: Literal["auto", "off"] = selector(
        "auto", "On CPU, choose DTYPE, OpenMP binding, KV cache size and the compile cache's format from this "
        "machine's CPU features, cores and memory (the reasons are logged; your own values always win); off: "
        "the platform file's values and vLLM's defaults.", "auto or off", alias="CPU_TUNING")
    image_version: str = selector(
        DEFAULT_IMAGE, "The vllm-ascend image the server runs on (its vLLM decides which flags exist); selects its "
        "layer of defaults in templates/images.yaml. The image sets it; set it when building one.",
        "a tag listed in templates/images.yaml", alias="IMAGE_VERSION")
    platform_variant: str = selector(
        "", "A named variant of the platform's defaults in templates/platforms/<platform>/<variant>.yaml "
        "(empty: the platform file alone; the NPU default is the guide's command).",
        "a variant name listed in templates/platforms/<platform>/", alias="PLATFORM_VARIANT")

    @field_validator("vllm_cpu_omp_threads_bind")
    @classmethod
    def _cpu_lists(cls, value: str | None) -> str | None:
        # vLLM's lists: "0-3", "0,2,4-7", one list per rank joined by "|".
        lists = r"\d+(-\d+)?(,\d+(-\d+)?)*(\|\d+(-\d+)?(,\d+(-\d+)?)*)*"
        if value is not None and value not in ("auto", "nobind") and not re.fullmatch(lists, value):
            raise ValueError("expected auto, nobind or CPU lists")
        return value

    # --- admission control (entrypoint/api_guard.py) ---------------------------------------
    admission_control: bool = setting(
        False, "Bound the requests that run the model (POST): past ADMIT_MAX_RUNNING in flight and "
        "ADMIT_MAX_QUEUED waiting, a request gets 429 at once; after ADMIT_QUEUE_TIMEOUT in the queue, 503; both "
        "with Retry-After. The supervisor's smoke check and canary are never shed.", BOOLEAN,
        alias="ADMISSION_CONTROL")
    admit_max_running: int | None = setting(
        None, "Requests in flight at most (default: MAX_NUM_SEQS, what vLLM runs at once, so its own unbounded "
        "queue stays empty).", "an integer >= 1", alias="ADMIT_MAX_RUNNING", ge=1)
    admit_max_queued: int | None = setting(
        None, "Requests waiting for a slot at most (default: MAX_NUM_SEQS, one more batch: a queued request "
        "waits for about one request's duration).", "an integer >= 0", alias="ADMIT_MAX_QUEUED", ge=0)
    admit_queue_timeout: float = setting(10.0, "Seconds a request may wait for a slot before it gets 503.",
                                         f"a number of seconds > 0 and <= {HOUR}", alias="ADMIT_QUEUE_TIMEOUT",
                                         gt=0, le=HOUR)
    admit_max_per_key: int | None = setting(
        None, "Requests one API key may have in flight or waiting (unset: no bound per key), so one client "
        "cannot take all the capacity.", "an integer >= 1, with an API key set", alias="ADMIT_MAX_PER_KEY", ge=1)

    # --- supervisor -----------------------------------------------------------------------
    startup_timeout: float = setting(3600.0, "Seconds from start to ready before giving up (includes download).",
                                     f"a number of seconds > 0 and <= {WEEK}", alias="STARTUP_TIMEOUT", gt=0,
                                     le=WEEK)
    stop_grace_period: float = setting(30.0, "Seconds vLLM gets to finish after SIGTERM before SIGKILL.",
                                       f"a number of seconds > 0 and <= {HOUR}", alias="STOP_GRACE_PERIOD", gt=0,
                                       le=HOUR)
    state_dir: Path = setting(DEFAULT_STATE_DIR, "Where the ready marker and state file live (healthcheck reads them).",
                              "a writable directory", alias="STATE_DIR")
    download_retries: int = setting(5, "Attempts for the whole download before giving up.", "an integer >= 1",
                                    alias="DOWNLOAD_RETRIES", ge=1)
    termination_log: str = setting(KUBERNETES_TERMINATION_LOG, "File that receives the one-line reason of a failed "
                                   "start (Kubernetes shows it in `kubectl describe`).",
                                   "an absolute file path; an existing file is overwritten only if empty or an earlier "
                                   "message (one line, <= 4 KiB)",
                                   alias="TERMINATION_LOG", min_length=1)
    smoke_on_start: bool = setting(True, "Run the smoke check before marking the server ready.", BOOLEAN,
                                   alias="SMOKE_ON_START")
    smoke_prompt: str = setting("What is the capital of France? Answer in one word.",
                                "The smoke check's chat message (the guide's question; a profile may set its "
                                "own).", "non-empty text", alias="SMOKE_PROMPT", min_length=1)
    smoke_expect: str = setting("", "Regular expression the smoke answer must match (default: the profile's; "
                                "empty: any non-empty answer).", "a regular expression", alias="SMOKE_EXPECT")
    smoke_max_tokens: int = setting(16, "max_tokens of the smoke request.", "an integer >= 1",
                                    alias="SMOKE_MAX_TOKENS", ge=1)
    request_timeout: float = setting(60.0, "Seconds one smoke or readiness request may take.",
                                     f"a number of seconds > 0 and <= {HOUR}", alias="REQUEST_TIMEOUT", gt=0,
                                     le=HOUR)
    canary_interval: float = setting(10.0, "Seconds between the canary's looks at a ready server: a 1-token "
                                     "completion when idle, the token counters when busy; after a failed look "
                                     "it looks again within 2 s (0: no canary; `healthcheck live` then only "
                                     "asks /health).",
                                     f"a number of seconds >= 0 and <= {DAY}", alias="CANARY_INTERVAL", ge=0,
                                     le=DAY)
    canary_timeout: float = setting(10.0, "Seconds the canary's 1-token completion may take before it counts "
                                    "as failed (unless the engine made progress meanwhile).",
                                    f"a number of seconds > 0 and <= {HOUR}", alias="CANARY_TIMEOUT", gt=0,
                                    le=HOUR)
    canary_failures: int = setting(3, "Consecutive canary failures that make `healthcheck live` fail.",
                                   "an integer from 1 to 100", alias="CANARY_FAILURES", ge=1, le=100)
    canary_action: Literal["restart", "report"] = setting(
        "restart", "What CANARY_FAILURES failures in a row do besides failing `healthcheck live`: restart (the "
        "supervisor kills vLLM's process group and exits non-zero with the reason, so the restart policy starts "
        "it again and a router stops sending to it) or report (only the probe and the metrics say so).",
        "restart or report", alias="CANARY_ACTION")
    metrics_port: int = setting(9464, "Port of the supervisor's own Prometheus metrics (startup phases, "
                                "readiness, canary, download, vLLM starts); vLLM's stay on PORT (0: none).",
                                "an integer from 0 to 65535", alias="METRICS_PORT", ge=0, le=65535)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_as_people_write_them(cls, value: Any, info: ValidationInfo) -> Any:
        kind = number_kind(cls.model_fields[str(info.field_name)])
        if kind is None or not isinstance(value, str):
            return value
        text = value_grammar.number_text(value, integer=kind is int)
        return int(text) if kind is int else text  # an int, so a Literal of integers matches it too

    @field_validator("model_id")
    @classmethod
    def _model_id_shape(cls, value: str) -> str:
        return value_grammar.model_id(value)

    @field_validator("model_revision")
    @classmethod
    def _revision_shape(cls, value: str) -> str:
        return value_grammar.revision(value)

    @field_validator("served_model_name")
    @classmethod
    def _served_name_shape(cls, value: str) -> str:
        return value_grammar.served_name(value) if value else value  # empty: the resolver derives it

    @field_validator("lws_leader_address")
    @classmethod
    def _leader_address(cls, value: str | None) -> str | None:
        return value_grammar.host_name(value) if value is not None else value

    @field_validator("model_source")
    @classmethod
    def _source_known(cls, value: str) -> str:
        if value != "modelscope" and not Path(value).is_absolute():
            raise ValueError("expected modelscope or an absolute path")
        return value

    @field_validator("termination_log")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("not an absolute path")
        return value

    @field_validator("host")
    @classmethod
    def _host_is_ip(cls, value: str) -> str:
        address, _, zone = value.partition("%")
        # ipaddress takes any text after `%` as an IPv6 zone; uvicorn's socket does not (`::1%]x`).
        if zone and not (isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address) and IFACE.fullmatch(zone)):
            raise ValueError("a zone (`%` and a network interface name) is allowed only after an IPv6 address")
        ipaddress.ip_address(value)
        return value

    @field_validator("compilation_config", "additional_config")
    @classmethod
    def _json_object(cls, value: str | None) -> str | None:
        try:
            parsed = json.loads(value) if value is not None else {}
        except RecursionError:  # not a ValueError, so pydantic would let it escape as a traceback
            raise ValueError("nested too deeply") from None
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object")
        return value

    @field_validator("extra_args")
    @classmethod
    def _shell_words(cls, value: str) -> str:
        shlex.split(value)
        return value

    @field_validator("smoke_expect")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            with warnings.catch_warnings():  # "possible nested set" warnings would add stray stderr lines
                warnings.simplefilter("ignore")
                re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        except (RecursionError, OverflowError):
            raise ValueError("not a regular expression (nested too deeply or too long)") from None
        return value

    @field_validator("model_cache_dir", "compile_cache_dir", "shipped_compile_cache_dir", "fallback_model_dir",
                     "state_dir", "ascend_log_path", "model_source", "termination_log", "pytorch_npu_alloc_conf",
                     "api_key_file", "modelscope_token_file", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        # A NUL byte passes as a Path here but makes every later file call raise ValueError; a line
        # break would split the rendered KEY=VALUE environment these values are exported in.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL byte")
        if isinstance(value, str) and "".join(value.splitlines()) != value:
            raise ValueError("contains a line break")
        # `/data ` and `/data` are two folders to the kernel, one to a person reading the render.
        if isinstance(value, str) and (value != value.strip() or any(unicodedata.category(c) == "Cc" for c in value)):
            raise ValueError("starts or ends with white space, or contains control characters")
        return value

    @field_validator("api_key", "modelscope_token")
    @classmethod
    def _secret_text(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never quotes the value: error lines are printed and logged.
        if value is not None and not SECRET_TEXT.fullmatch(value.get_secret_value()):
            raise ValueError("contains spaces, control or non-ASCII characters")
        return value

    @field_validator("modelscope_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        return value_grammar.http_url(value)

    @property
    def api_key_value(self) -> str | None:
        """API_KEY in clear, for the clients that send it (never for logs)."""
        return self.api_key.get_secret_value() if self.api_key else None

    @property
    def extra_argv(self) -> list[str]:
        """EXTRA_ARGS as argv words."""
        return shlex.split(self.extra_args)

    @property
    def base_url(self) -> str:
        """URL a local client uses to reach the server (a wildcard host is reached on loopback)."""
        host = self.host
        if ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1" if ipaddress.ip_address(host).version == 4 else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def node_role(self) -> NodeRole:
        """server: vLLM on this node alone; leader: node 0 of a LeaderWorkerSet group, serving the API;
        worker: another node of the group, running vLLM headless."""
        if self.lws_group_size is None:
            return "server"
        return "leader" if self.lws_worker_index == 0 else "worker"

    @property
    def cards_per_model(self) -> int:
        """The cards (ranks) one model uses, over every node of its group."""
        return self.tensor_parallel_size * (self.pipeline_parallel_size or 1) * self.data_parallel_size

    @property
    def leader_url(self) -> str:
        """Where a worker finds its leader's API: the same PORT on every node of the group."""
        host = str(self.lws_leader_address)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def hub_cache_folder(self) -> Path:
        """Where MODEL_ID at MODEL_REVISION lives inside MODEL_CACHE_DIR."""
        owner, name = self.model_id.split("/", 1)
        return self.model_cache_dir / "models" / owner / name / self.model_revision

    def public_dict(self) -> dict[str, Any]:
        """Effective settings by variable name, secrets and URL credentials masked: for logs and `render`."""
        data = self.model_dump(mode="json", by_alias=True)
        return {key: shown_value(key, value) for key, value in data.items()}


FIELDS = {str(f.alias): key for key, f in Settings.model_fields.items()}  # variable -> field
SELECTORS = tuple(str(f.alias) for f in Settings.model_fields.values() if declared(f, "selector"))


def shown_value(name: str, value: Any) -> Any:
    """A setting's value as printed: secrets as ***, credentials in URLs as ***@."""
    if name in SECRET_FIELDS and value:
        return "***"
    if name in URL_FIELDS and isinstance(value, str):
        return scrub_url(value)
    return value


def number_kind(field: FieldInfo) -> type | None:
    """int or float for a numeric field (Optional and a Literal of integers included, bool not), else None."""
    kinds = {field.annotation, *get_args(field.annotation)}
    choices = [value for kind in kinds if get_origin(kind) is Literal for value in get_args(kind)]
    if int in kinds or (choices and all(type(value) is int for value in choices)):
        return int
    return float if float in kinds else None


def allowed_values(field: FieldInfo) -> str:
    """What a setting accepts, as its error lines and the generated docs say it."""
    return str(declared(field, "allowed") or "")


def error_line(error: Mapping[str, Any]) -> str:
    """One user-facing line for a pydantic error: variable, value, what is allowed."""
    name = str(error["loc"][0]) if error["loc"] else "settings"
    field = next((f for f in Settings.model_fields.values() if f.alias == name), None)
    allowed = allowed_values(field) if field else None
    reason = str(error["msg"]).removeprefix("Value error, ")
    suffix = f"; allowed: {allowed}" if allowed else ""
    if name in UNSHOWN_FIELDS:
        return f"{name}=(not shown: it may hold a secret): {reason}{suffix}"
    shown = shown_value(name, error.get("input"))
    # Quoted as the environment holds it, whether the value came as text or a YAML number.
    text = shown if isinstance(shown, str) else str(shown).lower() if isinstance(shown, bool) else str(shown)
    if len(text) > SHOWN_VALUE_MAX:  # a pasted file or 5,000 digits: the line stays a line
        return f"{name}={text[:SHOWN_VALUE_MAX // 2]!r}... ({len(text)} characters): {reason}{suffix}"
    return f"{name}={text!r}: {reason}{suffix}"


def setting_names() -> set[str]:
    """Every environment variable the bundle reads."""
    return {str(field.alias) for field in Settings.model_fields.values()}


def inherited_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The process environment minus the bundle's settings: what the server's rendered env goes on top of.

    The server still needs PATH, HOME, locale and the like; the bundle's own variables
    reach it only through the rendered env, so render shows everything that differs.
    """
    names = setting_names()
    return {key: value for key, value in environ.items() if key not in names}


