"""The README's generated sections and its two opening commands."""

from __future__ import annotations

from pathlib import Path

from fastagi.docs import render

README = Path(__file__).parents[1] / "README.md"


def test_generated_sections_are_current() -> None:
    text = README.read_text()
    assert render(text) == text, "README is stale: run `python -m fastagi.docs README.md`"


def test_readme_opens_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    block = lines[lines.index("```") + 1: lines.index("```", lines.index("```") + 1)]
    assert block == ["pip install . && skype-fastagi serve", "pip install '.[test]' && python -m pytest"]
