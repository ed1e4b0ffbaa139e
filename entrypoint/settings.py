"""The one settings object: every knob of the bundle, validated before anything starts.

Values are layered, lowest precedence first:

1. the seed's values (the field defaults below),
2. the platform's defaults (``templates/platforms/<platform>.yaml``),
3. the platform variant named by PLATFORM_VARIANT (``templates/platforms/<platform>/<variant>.yaml``),
4. on the CPU, the machine's tuning (``cpu_tuning``: dtype, thread binding, KV cache; CPU_TUNING=off skips it),
5. the model profile's defaults, then its per-platform defaults
   (``templates/models/<profile>.yaml``),
6. a ``.env`` file given with ``--env-file``,
7. the process environment.

An empty value in layers 6-7 counts as unset, so ``VAR=`` lines in a compose env
file keep the default. A ``null`` in a YAML layer removes an optional flag (the
CPU platform drops the NPU-only ``--additional-config`` that way).

This module is the only place that reads the environment: everything downstream
takes a ``Settings``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo

from entrypoint import engine_flags, layers
from entrypoint.errors import SettingsError
from entrypoint.platform_detect import detect_platform
from entrypoint.startup_errors import KUBERNETES_TERMINATION_LOG
from entrypoint.state import DEFAULT_STATE_DIR

Platform = Literal["npu", "cuda", "cpu"]
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "ascend-serve"
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
BOOLEAN = "true or false"
# Secrets: VAR or VAR_FILE (a Docker/Kubernetes secret file), as docker-library images do.
SECRET_FILES: dict[str, str] = {"API_KEY_FILE": "API_KEY", "MODELSCOPE_TOKEN_FILE": "MODELSCOPE_TOKEN"}
SECRET_FIELDS: frozenset[str] = frozenset(SECRET_FILES.values())
SECRET_TEXT = re.compile(r"[\x21-\x7e]+")  # fits an HTTP header: printable ASCII, no spaces
SECRET_ALLOWED = "printable ASCII without spaces"
SECRET_FILE_ALLOWED = "a readable file holding the value (one trailing newline is ignored)"
SECRET_FILE_MAX_BYTES = 64 * 1024  # a key is short; this bounds a mistaken /dev/zero


def setting(default: Any, doc: str, allowed: str, **constraints: Any) -> Any:
    """A field whose alias is its environment variable; `allowed` feeds error lines and the README."""
    return Field(default, description=doc, json_schema_extra={"allowed": allowed}, **constraints)


class Settings(BaseModel):
    """Every setting the bundle reads; field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # --- where and what to serve ---------------------------------------------------------
    platform: Platform = setting("auto", "Accelerator: auto detects an Ascend device, then CUDA, else CPU.",
                                 "auto, npu, cuda or cpu", alias="PLATFORM", validate_default=True)
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
    model_profile: str = setting("", "Model profile in templates/models (default: the one whose model_id matches).",
                                 "a profile name from templates/models", alias="MODEL_PROFILE")
    fallback_model_dir: Path | None = setting(None, "Weights to serve, with a loud warning, when the hub is "
                                              "unreachable and the cache is empty.",
                                              "an existing model folder", alias="FALLBACK_MODEL_DIR")
    served_model_name: str = setting("", "Name clients use in requests (default: the profile's).",
                                     "a non-empty name", alias="SERVED_MODEL_NAME")
    modelscope_endpoint: str = setting("", "ModelScope hub URL (default: the client's own).",
                                       "an http(s) URL", alias="MODELSCOPE_ENDPOINT")

    # --- secrets: VAR or VAR_FILE, never both; shown only as *** -------------------------
    api_key: SecretStr | None = setting(None, "API key clients must send as `Authorization: Bearer <key>` (vLLM "
                                        "gets it as VLLM_API_KEY, never on its command line); /health stays open "
                                        "for probes. Prefer API_KEY_FILE.", SECRET_ALLOWED, alias="API_KEY")
    api_key_file: Path | None = setting(None, "File holding API_KEY (a Docker or Kubernetes secret).",
                                        SECRET_FILE_ALLOWED, alias="API_KEY_FILE")
    modelscope_token: SecretStr | None = setting(None, "ModelScope access token, for private models. Prefer "
                                                 "MODELSCOPE_TOKEN_FILE.",
                                                 SECRET_ALLOWED, alias="MODELSCOPE_TOKEN")
    modelscope_token_file: Path | None = setting(None, "File holding MODELSCOPE_TOKEN (a Docker or "
                                                 "Kubernetes secret).", SECRET_FILE_ALLOWED,
                                                 alias="MODELSCOPE_TOKEN_FILE")

    # --- vllm serve flags, defaults as in the seed ---------------------------------------
    host: str = setting("0.0.0.0", "--host", "an IP address", alias="HOST")
    port: int = setting(8000, "--port", "an integer from 1 to 65535", alias="PORT", ge=1, le=65535)
    data_parallel_size: int = setting(1, "--data-parallel-size", "an integer >= 1", alias="DATA_PARALLEL_SIZE", ge=1)
    tensor_parallel_size: int = setting(1, "--tensor-parallel-size", "an integer >= 1",
                                        alias="TENSOR_PARALLEL_SIZE", ge=1)
    seed: int = setting(1024, "--seed", "an integer >= 0", alias="SEED", ge=0)
    max_num_seqs: int = setting(32, "--max-num-seqs", "an integer >= 1", alias="MAX_NUM_SEQS", ge=1)
    max_model_len: int = setting(32768, "--max-model-len", "an integer >= 1", alias="MAX_MODEL_LEN", ge=1)
    max_num_batched_tokens: int = setting(4096, "--max-num-batched-tokens", "an integer >= MAX_NUM_SEQS",
                                          alias="MAX_NUM_BATCHED_TOKENS", ge=1)
    trust_remote_code: bool = setting(True, "--trust-remote-code", BOOLEAN, alias="TRUST_REMOTE_CODE")
    gpu_memory_utilization: float = setting(0.90, "--gpu-memory-utilization", "a number > 0 and <= 1",
                                            alias="GPU_MEMORY_UTILIZATION", gt=0, le=1)
    enable_prefix_caching: bool = setting(False, "--enable-prefix-caching / --no-enable-prefix-caching",
                                          BOOLEAN, alias="ENABLE_PREFIX_CACHING")
    compilation_config: str | None = setting('{"cudagraph_mode":"FULL_DECODE_ONLY"}', "--compilation-config",
                                             "a JSON object", alias="COMPILATION_CONFIG")
    additional_config: str | None = setting('{"enable_cpu_binding":true}', "--additional-config (vllm-ascend)",
                                            "a JSON object", alias="ADDITIONAL_CONFIG")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = setting(
        None, "--dtype (unset: vLLM's default)", "auto, bfloat16, float16 or float32", alias="DTYPE")
    enforce_eager: bool | None = setting(None, "--enforce-eager (unset: vLLM's default)", BOOLEAN,
                                         alias="ENFORCE_EAGER")
    enable_chunked_prefill: bool | None = setting(None, "--enable-chunked-prefill (unset: vLLM's default)",
                                                  BOOLEAN, alias="ENABLE_CHUNKED_PREFILL")
    shutdown_timeout: int | None = setting(None, "--shutdown-timeout: seconds vLLM drains accepted requests after "
                                           "SIGTERM (newer vLLM only; unset: vLLM's default, which aborts them).",
                                           "an integer >= 0, below STOP_GRACE_PERIOD", alias="SHUTDOWN_TIMEOUT", ge=0)
    extra_args: str = setting("", "More vllm serve flags, shell-split and appended last. Flags the bundle "
                              "manages are refused: those a setting renders (set the setting), --host, --port, "
                              "--model, --served-model-name, --api-key (use API_KEY_FILE), --uds, --ssl-*, --config.",
                              "shell words with balanced quotes, no managed flag", alias="EXTRA_ARGS")

    # --- runtime environment of the server (platform defaults in templates/platforms) ---
    vllm_use_modelscope: bool | None = setting(None, "Exported to vLLM.", BOOLEAN, alias="VLLM_USE_MODELSCOPE")
    pytorch_npu_alloc_conf: str | None = setting(None, "Exported to vLLM (NPU allocator).", "an allocator config",
                                                 alias="PYTORCH_NPU_ALLOC_CONF")
    hccl_buffsize: int | None = setting(None, "Exported to vLLM (HCCL buffer, MB).", "an integer >= 1",
                                        alias="HCCL_BUFFSIZE", ge=1)
    omp_proc_bind: Literal["true", "false", "close", "spread", "master", "primary"] | None = setting(
        None, "Exported to vLLM.", "true, false, close, spread, master or primary", alias="OMP_PROC_BIND")
    omp_num_threads: int | None = setting(None, "Exported to vLLM.", "an integer >= 1", alias="OMP_NUM_THREADS", ge=1)
    task_queue_enable: Literal[0, 1, 2] | None = setting(None, "Exported to vLLM (Ascend task queue).",
                                                         "0, 1 or 2", alias="TASK_QUEUE_ENABLE")
    ascend_log_path: Path | None = setting(None, "Exported to vLLM (Ascend plog folder).", "a writable directory",
                                           alias="ASCEND_LOG_PATH")
    vllm_cpu_kvcache_space: int | None = setting(None, "Exported to vLLM on CPU: KV cache size in GiB.",
                                                 "an integer >= 1", alias="VLLM_CPU_KVCACHE_SPACE", ge=1)
    vllm_cpu_omp_threads_bind: str | None = setting(
        None, "Exported to vLLM on CPU: the cores its OpenMP threads are pinned to (auto: one thread per "
        "physical core, minus the reserved ones; nobind: no pinning; ranks separated by |).",
        "auto, nobind or core lists such as 0-3 or 0,2,4-7", alias="VLLM_CPU_OMP_THREADS_BIND")
    vllm_cpu_num_of_reserved_cpu: int | None = setting(
        None, "Exported to vLLM on CPU: cores left out of the OpenMP threads for the API server and scheduler.",
        "an integer >= 0", alias="VLLM_CPU_NUM_OF_RESERVED_CPU", ge=0)
    vllm_use_aot_compile: bool | None = setting(
        None, "Exported to vLLM (as 1 or 0): keep torch.compile's graph as an AOT artifact in the compile cache "
        "(unset: vLLM's default, on); off: Dynamo traces again at each start and Inductor's kernel cache is "
        "reused.", BOOLEAN, alias="VLLM_USE_AOT_COMPILE")
    cpu_tuning: Literal["auto", "off"] = setting(
        "auto", "On CPU, choose DTYPE, OpenMP binding, KV cache size and the compile cache's format from this "
        "machine's CPU features, cores and memory (the reasons are logged; your own values always win); off: "
        "the platform file's values and vLLM's defaults.", "auto or off", alias="CPU_TUNING")
    platform_variant: str = setting(
        "", "A named variant of the platform's defaults in templates/platforms/<platform>/<variant>.yaml "
        "(empty: the platform file alone; the NPU default is the seed's command).",
        "a variant name listed in templates/platforms/<platform>/", alias="PLATFORM_VARIANT")

    @field_validator("vllm_cpu_omp_threads_bind")
    @classmethod
    def _cpu_lists(cls, value: str | None) -> str | None:
        # vLLM's lists: "0-3", "0,2,4-7", one list per rank joined by "|".
        lists = r"\d+(-\d+)?(,\d+(-\d+)?)*(\|\d+(-\d+)?(,\d+(-\d+)?)*)*"
        if value is not None and value not in ("auto", "nobind") and not re.fullmatch(lists, value):
            raise ValueError("expected auto, nobind or CPU lists")
        return value

    # --- supervisor -----------------------------------------------------------------------
    startup_timeout: float = setting(3600.0, "Seconds from start to ready before giving up (includes download).",
                                     "a number of seconds > 0", alias="STARTUP_TIMEOUT", gt=0)
    stop_grace_period: float = setting(30.0, "Seconds vLLM gets to finish after SIGTERM before SIGKILL.",
                                       "a number of seconds > 0", alias="STOP_GRACE_PERIOD", gt=0)
    state_dir: Path = setting(DEFAULT_STATE_DIR, "Where the ready marker and state file live (healthcheck reads them).",
                              "a writable directory", alias="STATE_DIR")
    download_retries: int = setting(5, "Attempts for the whole download before giving up.", "an integer >= 1",
                                    alias="DOWNLOAD_RETRIES", ge=1)
    termination_log: str = setting(KUBERNETES_TERMINATION_LOG, "File that receives the one-line reason of a failed "
                                   "start (Kubernetes shows it in `kubectl describe`).", "a file path",
                                   alias="TERMINATION_LOG", min_length=1)
    smoke_on_start: bool = setting(True, "Run the smoke check before marking the server ready.", BOOLEAN,
                                   alias="SMOKE_ON_START")
    smoke_prompt: str = setting("What is the capital of France? Answer in one word.",
                                "The smoke check's chat message (default: the profile's).", "non-empty text",
                                alias="SMOKE_PROMPT", min_length=1)
    smoke_expect: str = setting("", "Regular expression the smoke answer must match (default: the profile's; "
                                "empty: any non-empty answer).", "a regular expression", alias="SMOKE_EXPECT")
    smoke_max_tokens: int = setting(16, "max_tokens of the smoke request.", "an integer >= 1",
                                    alias="SMOKE_MAX_TOKENS", ge=1)
    request_timeout: float = setting(60.0, "Seconds one smoke or readiness request may take.",
                                     "a number of seconds > 0", alias="REQUEST_TIMEOUT", gt=0)
    canary_interval: float = setting(30.0, "Seconds between the canary's looks at a ready server: a 1-token "
                                     "completion when idle, the token counters when busy (0: no canary; "
                                     "`healthcheck live` then only asks /health).",
                                     "a number of seconds >= 0", alias="CANARY_INTERVAL", ge=0)
    canary_timeout: float = setting(10.0, "Seconds the canary's 1-token completion may take before it counts "
                                    "as failed (unless the engine made progress meanwhile).",
                                    "a number of seconds > 0", alias="CANARY_TIMEOUT", gt=0)
    canary_failures: int = setting(3, "Consecutive canary failures that make `healthcheck live` fail.",
                                   "an integer >= 1", alias="CANARY_FAILURES", ge=1)

    @field_validator("platform", mode="before")
    @classmethod
    def _resolve_auto(cls, value: Any) -> Any:
        return detect_platform() if value == "auto" else value

    @field_validator("model_id")
    @classmethod
    def _model_id_shape(cls, value: str) -> str:
        if not MODEL_ID_PATTERN.match(value):
            raise ValueError("expected owner/name")
        return value

    @field_validator("model_source")
    @classmethod
    def _source_known(cls, value: str) -> str:
        if value != "modelscope" and not Path(value).is_absolute():
            raise ValueError("expected modelscope or an absolute path")
        return value

    @field_validator("host")
    @classmethod
    def _host_is_ip(cls, value: str) -> str:
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

    @field_validator("model_cache_dir", "compile_cache_dir", "fallback_model_dir", "state_dir", "ascend_log_path",
                     "model_source", "termination_log", "pytorch_npu_alloc_conf", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        # A NUL byte passes as a Path here but makes every later file call raise ValueError; a line
        # break would split the rendered KEY=VALUE environment these values are exported in.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL byte")
        if isinstance(value, str) and "".join(value.splitlines()) != value:
            raise ValueError("contains a line break")
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
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http(s) URL with a host")
        return value.rstrip("/")

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

    def public_dict(self) -> dict[str, Any]:
        """Effective settings by variable name, secrets masked: for logs and `render`."""
        data = self.model_dump(mode="json", by_alias=True)
        return {key: ("***" if key in SECRET_FIELDS and value else value) for key, value in data.items()}


def cross_field_errors(settings: Settings) -> list[str]:
    """Rules vLLM enforces between flags, checked before it spends minutes starting."""
    errors = []
    if settings.max_num_batched_tokens < settings.max_num_seqs:
        errors.append(f"MAX_NUM_BATCHED_TOKENS={settings.max_num_batched_tokens}: must be >= MAX_NUM_SEQS "
                      f"({settings.max_num_seqs}), as vLLM requires")
    if settings.enable_chunked_prefill is False and settings.max_num_batched_tokens < settings.max_model_len:
        errors.append(f"MAX_NUM_BATCHED_TOKENS={settings.max_num_batched_tokens}: must be >= MAX_MODEL_LEN "
                      f"({settings.max_model_len}) when ENABLE_CHUNKED_PREFILL=false, as vLLM requires")
    if settings.shutdown_timeout is not None and settings.shutdown_timeout >= settings.stop_grace_period:
        errors.append(f"SHUTDOWN_TIMEOUT={settings.shutdown_timeout}: must be below STOP_GRACE_PERIOD "
                      f"({settings.stop_grace_period:g}), or the supervisor kills vLLM mid-drain")
    if settings.model_source != "modelscope" and not has_config(Path(settings.model_source)):
        errors.append(f"MODEL_SOURCE={settings.model_source!r}: no config.json there; allowed: modelscope "
                      "or an absolute path to a model folder")
    if settings.fallback_model_dir and not has_config(settings.fallback_model_dir):
        errors.append(f"FALLBACK_MODEL_DIR={str(settings.fallback_model_dir)!r}: no config.json there; allowed: an "
                      "existing model folder")
    errors += engine_flags.managed_flag_errors(settings.extra_argv)
    return errors


def has_config(folder: Path) -> bool:
    """Whether `folder` holds a config.json; a name the OS rejects (too long, say) counts as no."""
    try:
        return (folder / "config.json").is_file()
    except (OSError, ValueError):
        return False


def read_secret_file(name: str, path: Path) -> tuple[str | None, str | None]:
    """The secret a VAR_FILE holds, or the error line (naming the variable and path, never the content)."""
    where = f"{name}={str(path)!r}"
    try:
        with path.open("rb") as handle:
            data = handle.read(SECRET_FILE_MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        return None, f"{where}: cannot read it ({reason}); allowed: {SECRET_FILE_ALLOWED}"
    if len(data) > SECRET_FILE_MAX_BYTES:
        return None, f"{where}: larger than {SECRET_FILE_MAX_BYTES} bytes; allowed: {SECRET_FILE_ALLOWED}"
    # `echo key > file` and Kubernetes' stringData leave one trailing newline; the key is what precedes it.
    text = data.decode("ascii", errors="replace").removesuffix("\n").removesuffix("\r")
    if not text:
        return None, f"{where}: the file is empty; allowed: {SECRET_FILE_ALLOWED}"
    if not SECRET_TEXT.fullmatch(text):
        return None, f"{where}: the file's content has spaces, control or non-ASCII characters; allowed: " \
                     f"{SECRET_ALLOWED}"
    return text, None


def resolve_secret_files(settings: Settings) -> tuple[Settings, list[str]]:
    """Fill each secret from its VAR_FILE; both VAR and VAR_FILE set is an error."""
    updates: dict[str, SecretStr] = {}
    errors = []
    fields = {str(f.alias): key for key, f in Settings.model_fields.items()}
    for file_name, name in SECRET_FILES.items():
        path = getattr(settings, fields[file_name])
        if path is None:
            continue
        if getattr(settings, fields[name]) is not None:
            errors.append(f"{file_name}={str(path)!r}: {name} is set too; allowed: one of them ({name} holds the "
                          f"value, {file_name} a file holding it)")
            continue
        value, error = read_secret_file(file_name, path)
        if error:
            errors.append(error)
        else:
            updates[fields[name]] = SecretStr(str(value))
    return settings.model_copy(update=updates), errors


def allowed_values(field: FieldInfo) -> str:
    """What a setting accepts, as its error lines and the generated docs say it."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("allowed", ""))


def error_line(error: Mapping[str, Any]) -> str:
    """One user-facing line for a pydantic error: variable, value, what is allowed."""
    name = str(error["loc"][0]) if error["loc"] else "settings"
    field = next((f for f in Settings.model_fields.values() if f.alias == name), None)
    allowed = allowed_values(field) if field else None
    reason = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    shown = "***" if name in SECRET_FIELDS else value
    suffix = f"; allowed: {allowed}" if allowed else ""
    return f"{name}={shown!r}: {reason}{suffix}"


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


def environment_layer(environ: Mapping[str, str]) -> dict[str, str]:
    """The known, non-empty variables of one environment mapping."""
    names = setting_names()
    return {key: value for key, value in environ.items() if key in names and value.strip() != ""}


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = None,
                  templates_dir: Path | None = None) -> Settings:
    """Build and validate the settings (from the process environment unless `environ` is given);
    raise SettingsError listing every problem found."""
    user = environment_layer(layers.read_env_file(env_file) if env_file else {})
    user.update(environment_layer(os.environ if environ is None else environ))
    merged, layer_errors = layers.merge_defaults(user, templates_dir or layers.TEMPLATES_DIR)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(layer_errors + [error_line(e) for e in exc.errors()]) from None
    settings, secret_errors = resolve_secret_files(settings)
    errors = layer_errors + secret_errors + cross_field_errors(settings)
    if errors:
        raise SettingsError(errors)
    return settings
