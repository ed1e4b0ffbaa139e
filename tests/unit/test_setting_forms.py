"""One declaration per setting: a field says what it becomes (its vLLM flag, its exported
variable), the argv and the environment are built from that, and the serve templates name
no such field. A new setting that becomes a flag is one field."""

from __future__ import annotations

import re

from pydantic import create_model

from entrypoint.default_layers import TEMPLATES_DIR
from entrypoint.engine_flags import FLAGS, declared_flags
from entrypoint.render import exports, render_command
from entrypoint.resolver import load_settings
from entrypoint.settings import SELECTORS, Settings, declared, setting
from entrypoint.vllm_forms import EngineFlag


def carried() -> set[str]:
    """The fields that declare a flag or an export."""
    return {name for name, info in Settings.model_fields.items()
            if declared(info, "flag") or declared(info, "export")}


def test_the_serve_templates_name_no_field_that_declares_its_form():
    named = {match for path in (TEMPLATES_DIR / "serve").glob("*.j2")
             for match in re.findall(r"\bs\.([a-z_]+)", path.read_text())}
    assert named and not named & carried()


def test_every_flag_and_export_is_declared_on_its_field():
    assert {row.attribute for row in FLAGS} <= carried()
    settings = load_settings({"PLATFORM": "npu"})
    assert list(exports(settings)) == ["VLLM_USE_MODELSCOPE", "PYTORCH_NPU_ALLOC_CONF", "HCCL_BUFFSIZE",
                                       "OMP_PROC_BIND", "OMP_NUM_THREADS", "TASK_QUEUE_ENABLE", "ASCEND_LOG_PATH"]
    assert exports(settings).items() <= render_command(settings, "/m").env.items()


def test_a_new_flag_is_one_field():
    extended = create_model("Extended", __base__=Settings, max_loras=(int | None, setting(
        None, "--max-loras", "an integer >= 1", alias="MAX_LORAS", flag=EngineFlag("--max-loras", "optional",
                                                                                    "max_loras"), ge=1)))
    row = declared_flags(extended)[-1]
    assert (row.setting, row.options) == ("MAX_LORAS", ("--max-loras",))
    assert row.words(extended.model_validate({"MAX_LORAS": "4"}).max_loras) == ["--max-loras", "4"]
    assert len(declared_flags(extended)) == len(FLAGS) + 1


def test_selectors_are_declared_as_selectors():
    assert set(SELECTORS) == {"PLATFORM", "PLATFORM_VARIANT", "MODEL_PROFILE", "IMAGE_VERSION", "CPU_TUNING"}
    assert not {name.lower() for name in SELECTORS} & carried()  # they pick layers; vLLM never sees them
