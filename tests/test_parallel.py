"""The parallel run's groups (tests/parallel.py) name files that exist: a renamed file would otherwise
silently leave its group and run at the same moment as the others."""

from __future__ import annotations

from pathlib import Path

from tests.parallel import GROUPS

ROOT = Path(__file__).resolve().parents[1]


def test_every_grouped_file_exists() -> None:
    missing = [path for paths in GROUPS.values() for path in paths if not (ROOT / path).is_file()]
    assert not missing
