"""The README's settings table is the generated one."""

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
