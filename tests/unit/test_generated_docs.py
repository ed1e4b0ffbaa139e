"""Generated documents (the settings reference in docs/configuration.md, compose/.env.example,
the Kubernetes settings.env) match the code."""

import re
from pathlib import Path

from entrypoint.settings_docs import BEGIN, END, markdown_table

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "configuration.md"


def test_settings_table_matches_the_code():
    text = REFERENCE.read_text()
    current = text[text.index(BEGIN): text.index(END) + len(END)]
    assert current == markdown_table(), "regenerate: python -m entrypoint settings --markdown"


def test_readme_shows_the_two_commands_first():
    text = README.read_text()
    assert text.index("make up") < text.index("### Prerequisites")
    assert text.index("make test") < text.index("### Prerequisites")


def test_env_example_lists_every_setting():
    from entrypoint.settings_docs import env_example

    path = README.parent / "compose" / ".env.example"
    assert path.read_text() == env_example(), "regenerate: python -m entrypoint settings --env-example"


CONFIGMAP_ENV = README.parent / "deploy" / "kubernetes" / "base" / "settings.env"
ENTRY = re.compile(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$")


def env_entries(text: str) -> dict[str, tuple[str, bool]]:
    """NAME -> (value, active) for every `NAME=value` or `#NAME=value` line."""
    return {m[2]: (m[3], m[1] == "") for line in text.splitlines() if (m := ENTRY.match(line))}


def test_configmap_env_is_generated():
    from entrypoint.settings_docs import configmap_env

    assert CONFIGMAP_ENV.read_text() == configmap_env(), "regenerate: python -m entrypoint settings --configmap-env"


def test_configmap_env_agrees_with_env_example():
    from entrypoint.settings import SECRET_FIELDS
    from entrypoint.settings_docs import MANIFEST_FIXED

    example = env_entries((README.parent / "compose" / ".env.example").read_text())
    configmap = env_entries(CONFIGMAP_ENV.read_text())
    # Secrets belong in a Secret, not a ConfigMap; their _FILE paths may be there.
    assert set(configmap) == set(example) - set(MANIFEST_FIXED) - SECRET_FIELDS
    assert {name: value for name, (value, _) in configmap.items()} == \
        {name: value for name, (value, _) in example.items() if name in configmap}
    # A ConfigMap value beats the platform, variant and profile layers: every default stays commented out.
    assert not {name for name, (_, on) in configmap.items() if on}


ROW = re.compile(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", re.MULTILINE)


def test_the_readmes_settings_show_the_defaults_of_the_reference():
    # README's short table restates defaults: each must be the generated reference's.
    reference = dict(ROW.findall(REFERENCE.read_text()))
    shown = [(name, default) for name, default in ROW.findall(README.read_text()) if name in reference]
    assert len(shown) >= 10
    assert [(name, default, reference[name]) for name, default in shown if default != reference[name]] == []


def test_the_container_files_state_the_resolvers_defaults():
    """The Dockerfile, Compose and Kubernetes defaults are what `make docs` writes from the resolver."""
    from tests.unit.test_image_build import load

    regen = load("regen-docs.py")
    blocks = regen.fragments()
    for name in regen.GENERATED_FILES:
        text = (ROOT / name).read_text()
        assert regen.BLOCK.search(text), f"{name}: no generated block"
        assert text == regen.filled(text, blocks), f"{name} is stale: run `make docs`"
    # The CPU runtime stage makes the cache folder its user owns: generated too.
    cpu_runtime = (ROOT / "Dockerfile").read_text().split("AS cpu-runtime", 1)[1].split("\nFROM ", 1)[0]
    assert "# generated:begin cache-owner" in cpu_runtime
