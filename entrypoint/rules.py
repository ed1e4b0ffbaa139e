"""The rules between settings: what vLLM, the supervisor and the admission guard need of several
values together, checked on validated settings before vLLM spends minutes starting."""

from __future__ import annotations

from pathlib import Path

from entrypoint import value_grammar
from entrypoint.engine_flags import managed_flag_errors
from entrypoint.settings import Settings

PATH_MAX = 4000  # Linux's 4096, less room for the files inside the weights' folder


def errors(settings: Settings) -> list[str]:
    """Every cross-field problem, one line each."""
    return cross_field_errors(settings) + admission_errors(settings)


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
    if not value_grammar.inside(settings.hub_cache_folder, settings.model_cache_dir):
        errors.append(f"MODEL_REVISION={settings.model_revision!r}: its cache folder {settings.hub_cache_folder} lies "
                      "outside MODEL_CACHE_DIR; allowed: a branch, tag or commit name")
    if len(str(settings.hub_cache_folder)) > PATH_MAX:
        errors.append(f"MODEL_CACHE_DIR={str(settings.model_cache_dir)!r}: with MODEL_ID and MODEL_REVISION the "
                      f"weights' folder is longer than {PATH_MAX} characters; allowed: a shorter folder")
    if settings.model_source != "modelscope" and not has_config(Path(settings.model_source)):
        errors.append(f"MODEL_SOURCE={settings.model_source!r}: no config.json there; allowed: modelscope "
                      "or an absolute path to a model folder")
    if settings.fallback_model_dir and not has_config(settings.fallback_model_dir):
        errors.append(f"FALLBACK_MODEL_DIR={str(settings.fallback_model_dir)!r}: no config.json there; allowed: an "
                      "existing model folder")
    errors += managed_flag_errors(settings.extra_argv) + port_clashes(settings)
    return errors + node_group_errors(settings)


def port_clashes(settings: Settings) -> list[str]:
    """Every port the bundle listens on is its own: a second bind fails only after minutes of start."""
    ports = {"PORT": settings.port, "METRICS_PORT": settings.metrics_port, "MULTI_NODE_PORT": settings.multi_node_port}
    errors, seen = [], {}
    for name, port in ports.items():
        if port and port in seen:  # METRICS_PORT=0: no metrics server
            errors.append(f"{name}={port}: {seen[port]} listens there too; allowed: a port no other setting uses")
        seen.setdefault(port, name)
    return errors


LWS_NAMES = ("LWS_GROUP_SIZE", "LWS_WORKER_INDEX", "LWS_LEADER_ADDRESS")


def node_group_errors(settings: Settings) -> list[str]:
    """A LeaderWorkerSet group runs one vLLM across its nodes: the rules vLLM's mp backend sets for that."""
    given = {name: getattr(settings, name.lower()) for name in LWS_NAMES}
    present = {name: value for name, value in given.items() if value is not None}
    if not present:
        return []
    if len(present) < len(LWS_NAMES):
        name, value = next(iter(present.items()))
        missing = " and ".join(name for name in LWS_NAMES if name not in present)
        return [f"{name}={str(value)!r}: {missing} unset; allowed: all of {', '.join(LWS_NAMES)} (LeaderWorkerSet "
                "sets them in every pod of a group) or none"]
    size, index = int(settings.lws_group_size or 0), int(settings.lws_worker_index or 0)
    cards = settings.cards_per_model
    errors = []
    if index >= size:
        errors.append(f"LWS_WORKER_INDEX={str(index)!r}: not below LWS_GROUP_SIZE ({size}); allowed: an integer "
                      f"from 0 to {size - 1}")
    if settings.platform == "cpu":
        errors.append(f"LWS_GROUP_SIZE={str(size)!r}: several nodes per model need an accelerator; allowed: "
                      "unset on PLATFORM=cpu")
    if settings.data_parallel_size != 1:
        errors.append(f"DATA_PARALLEL_SIZE={str(settings.data_parallel_size)!r}: the group's nodes split one "
                      "model (more copies are more LeaderWorkerSet replicas); allowed: 1 with LWS_GROUP_SIZE")
    if cards % size:
        errors.append(f"LWS_GROUP_SIZE={str(size)!r}: TENSOR_PARALLEL_SIZE x PIPELINE_PARALLEL_SIZE ({cards}) "
                      "is not a multiple of it, as vLLM's mp backend requires; allowed: a group size dividing "
                      "the card count")
    if settings.distributed_executor_backend not in (None, "mp"):
        errors.append(f"DISTRIBUTED_EXECUTOR_BACKEND={settings.distributed_executor_backend!r}: a LeaderWorkerSet "
                      "group joins through vLLM's own processes; allowed: mp with LWS_GROUP_SIZE")
    return errors


def has_config(folder: Path) -> bool:
    """Whether `folder` holds a config.json; a name the OS rejects (too long, say) counts as no."""
    try:
        return (folder / "config.json").is_file()
    except (OSError, ValueError):
        return False


def admission_errors(settings: Settings) -> list[str]:
    """Admission bounds that cannot work: a bound per key needs keys; a bound without the control does nothing."""
    errors = []
    if settings.admit_max_per_key is not None and settings.api_key is None:
        errors.append(f"ADMIT_MAX_PER_KEY={settings.admit_max_per_key}: there is no API key to count by; allowed: "
                      "unset, or set with API_KEY or API_KEY_FILE")
    if not settings.admission_control:
        for name in ("ADMIT_MAX_RUNNING", "ADMIT_MAX_QUEUED", "ADMIT_MAX_PER_KEY"):
            value = getattr(settings, name.lower())
            if value is not None:
                errors.append(f"{name}={value}: has no effect with ADMISSION_CONTROL=false; allowed: unset, or "
                              "set with ADMISSION_CONTROL=true")
                break
    return errors
