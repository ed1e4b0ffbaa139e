"""Generated documents (README settings table, compose/.env.example) match the code."""

from pathlib import Path

from entrypoint.settings_table import BEGIN, END, markdown_table

README = Path(__file__).parents[2] / "README.md"


def test_settings_table_matches_the_code():
    text = README.read_text()
    current = text[text.index(BEGIN): text.index(END) + len(END)]
    assert current == markdown_table(), "regenerate: python -m entrypoint settings --markdown"


def test_readme_shows_the_two_commands_first():
    text = README.read_text()
    assert text.index("make up") < text.index("## Configuration")
    assert text.index("make test") < text.index("## Configuration")


def test_env_example_lists_every_setting():
    from entrypoint.settings_table import env_example

    path = README.parent / "compose" / ".env.example"
    assert path.read_text() == env_example(), "regenerate: python -m entrypoint settings --env-example"
