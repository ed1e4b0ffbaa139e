"""Rewrite the generated documents from the settings code: the settings reference
(docs/configuration.md),
compose/.env.example and the Kubernetes ConfigMap's settings.env (`make docs`); and the
monitoring files generated from observability/ (the dashboard, the PrometheusRule)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from entrypoint.default_layers import DEFAULT_IMAGE
from entrypoint.settings_docs import BEGIN, END, configmap_env, env_example, markdown_table
from observability import generate

ROOT = Path(__file__).resolve().parents[1]


def images_json() -> str:
    """templates/images.json: images.yaml for the host side, which reads JSON on the standard library."""
    images = yaml.safe_load((ROOT / "templates" / "images.yaml").read_text())
    note = "Generated from images.yaml by `make docs` (the host side reads JSON); edit images.yaml."
    return json.dumps({"_generated": note, "default_image": DEFAULT_IMAGE, **images}, indent=2) + "\n"


def main() -> None:
    reference = ROOT / "docs" / "configuration.md"
    text = reference.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    reference.write_text(text[:start] + markdown_table() + text[end:])
    (ROOT / "compose" / ".env.example").write_text(env_example())
    (ROOT / "deploy" / "kubernetes" / "base" / "settings.env").write_text(configmap_env())
    (ROOT / "templates" / "images.json").write_text(images_json())
    generate.main([])


if __name__ == "__main__":
    main()
