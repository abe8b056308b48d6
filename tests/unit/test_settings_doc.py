"""docs/configuration.md is what the Settings class says (recsys_faust/settings_doc.py)."""

from pathlib import Path

from recsys_faust.settings import env_names
from recsys_faust.settings.sections import FIELD_SECTION
from recsys_faust.settings_doc import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_page_is_the_generated_one():
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: python -m recsys_faust.settings_doc > docs/configuration.md")


def test_every_setting_is_on_the_page_with_an_explanation():
    page = render()
    for name in FIELD_SECTION:
        row = next(line for line in page.splitlines() if f"`{env_names(name)[0]}`" in line)
        assert not row.endswith("|  |"), f"{name} has no comment in settings/sections.py"


def test_the_committed_env_example_is_the_generated_one():
    from recsys_faust.settings_doc import render_env_example

    committed = (PAGE.parents[1] / ".env.example").read_text(encoding="utf-8")
    assert committed == render_env_example(), (
        ".env.example is out of date: python -m recsys_faust.settings_doc --env-example > .env.example")
