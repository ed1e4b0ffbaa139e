"""Rewrite the generated documents from the settings code: the settings reference
(docs/configuration.md), compose/.env.example and the Kubernetes ConfigMap's settings.env
(`make docs`); the defaults the Dockerfile, Compose and Kubernetes files state, between
their `generated:begin NAME` / `generated:end NAME` lines; and the monitoring files
generated from observability/ (the dashboard, the PrometheusRule)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import yaml

from entrypoint.default_layers import DEFAULT_IMAGE, image_catalogue
from entrypoint.render import render_command
from entrypoint.resolver import CONTAINER_CACHE_DIR, load_settings
from entrypoint.settings_docs import BEGIN, END, configmap_env, env_example, markdown_table
from observability import generate

ROOT = Path(__file__).resolve().parents[1]
# Files whose defaults come from the resolver, written between marker lines of the same indentation.
GENERATED_FILES = ("Dockerfile", "compose/compose.yaml", "deploy/kubernetes/base/deployment.yaml",
                   "deploy/kubernetes/components/autoscaling-keda/scaledobject.yaml")
BLOCK = re.compile(r"^(?P<indent>[ \t]*)# generated:begin (?P<name>[\w-]+)[^\n]*\n.*?^(?P=indent)# generated:end "
                   r"(?P=name)\n", re.M | re.S)


def images_json() -> str:
    """templates/images.json: images.yaml for the host side, which reads JSON on the standard library."""
    images = yaml.safe_load((ROOT / "templates" / "images.yaml").read_text())
    note = "Generated from images.yaml by `make docs` (the host side reads JSON); edit images.yaml."
    return json.dumps({"_generated": note, "default_image": DEFAULT_IMAGE,
                       "default_hardware": next(iter(image_catalogue()["hardware"])), **images}, indent=2) + "\n"


def default_base_image() -> str:
    """The base image `make build` picks with nothing set (scripts/base-image.py, on images.json's content)."""
    spec = importlib.util.spec_from_file_location("base_image", ROOT / "scripts" / "base-image.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_args({}, None, json.loads(images_json()))["BASE_IMAGE"]


def fragments() -> dict[str, list[str]]:
    """Each generated block's lines, by its name."""
    cache = CONTAINER_CACHE_DIR
    container = load_settings({"PLATFORM": "npu", "MODEL_CACHE_DIR": str(cache)})
    env = render_command(container, cache).env
    served = load_settings({"PLATFORM": "npu"}).served_model_name
    return {
        "default-image": [f"ARG BASE_IMAGE={default_base_image()}", f"ARG IMAGE_VERSION={DEFAULT_IMAGE}"],
        # The bundle's own hub client (the download) runs outside the rendered env: it gets the same cache.
        "container-cache": [f"ENV MODEL_CACHE_DIR={cache} MODELSCOPE_CACHE={env['MODELSCOPE_CACHE']}",
                            f'VOLUME ["{cache}"]'],
        # The CPU image's user owns the cache folder, so a new named volume starts writable for it.
        "cache-owner": ["RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin serve \\",
                        f"    && mkdir -p {cache} /opt/bundle \\", f"    && chown serve:serve {cache}"],
        "cache-volume": [f"x-cache-volume: &cache-volume model-cache:{cache}"],
        "cache-dir-env": [f"MODEL_CACHE_DIR: {cache}"],
        "container-cache-env": [f"- {{name: MODEL_CACHE_DIR, value: {cache}}}"],
        "container-cache-mount": [f"- {{name: models, mountPath: {cache}}}"],
        "served-model": [f'query: sum(model_name:vllm_num_requests_waiting:sum{{model_name="{served}"}})'],
    }


def filled(text: str, blocks: dict[str, list[str]]) -> str:
    """`text` with every generated block rewritten; a block of an unknown name is an error."""
    def block(match: re.Match[str]) -> str:
        indent, name = match["indent"], match["name"]
        begin, *_, end = match[0].splitlines(keepends=True)
        return begin + "".join(f"{indent}{line}\n" for line in blocks[name]) + end
    return BLOCK.sub(block, text)


def main() -> None:
    reference = ROOT / "docs" / "configuration.md"
    text = reference.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    reference.write_text(text[:start] + markdown_table() + text[end:])
    (ROOT / "compose" / ".env.example").write_text(env_example())
    (ROOT / "deploy" / "kubernetes" / "base" / "settings.env").write_text(configmap_env())
    (ROOT / "templates" / "images.json").write_text(images_json())
    blocks = fragments()
    for name in GENERATED_FILES:
        path = ROOT / name
        path.write_text(filled(path.read_text(), blocks))
    generate.main([])


if __name__ == "__main__":
    main()
