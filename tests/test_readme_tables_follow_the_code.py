"""The README's generated parts stay in step with the code.

Cases: the settings table equals `functions.settings.markdown_table()`; every event type of the
catalogue is documented; the quick start is exactly the two commands.
"""

from __future__ import annotations

from pathlib import Path

from functions import events
from functions.settings_doc import markdown_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_settings_table_is_generated_from_the_models() -> None:
    assert markdown_table() in README, "regenerate the README table: python -m functions.settings_doc"


def test_every_emitted_event_type_is_documented() -> None:
    for type_ in (events.PING, events.CR_APPLIED, events.CR_DELETED, events.EXPORT_COMPLETED, events.UPLOAD_COMPLETED):
        assert f"`{type_}`" in README or type_ in README


def test_quick_start_is_the_two_commands() -> None:
    block = README.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["./taskw demo", "./taskw test"]
