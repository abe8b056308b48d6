"""docs/configuration.md is what the Settings class says (recsys_faust/settings_doc.py)."""

from pathlib import Path

from recsys_faust.settings import Settings
from recsys_faust.settings_doc import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_page_is_the_generated_one():
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: python -m recsys_faust.settings_doc > docs/configuration.md")


def test_every_setting_is_on_the_page_with_an_explanation():
    page = render()
    for name in Settings.model_fields:
        row = next(line for line in page.splitlines() if f"`RECSYS_{name.upper()}`" in line)
        assert not row.endswith("|  |"), f"{name} has no comment in settings.py"
