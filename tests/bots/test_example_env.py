from __future__ import annotations

import re
from pathlib import Path

from config.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.env"


def example_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_example_env_is_a_valid_configuration() -> None:
    s = Settings.from_env(example_values())
    assert s.is_sqlite and not s.telegram_enabled


def test_every_setting_is_documented() -> None:
    documented = set(example_values())
    aliases = {str(f.validation_alias) for f in Settings.model_fields.values()}
    assert aliases == documented


def test_every_variable_has_a_comment() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"[A-Z_]+=", line):
            j = i - 1
            while re.match(r"[A-Z_]+=", lines[j]):  # a group of related variables under one comment
                j -= 1
            assert lines[j].startswith("#"), line
