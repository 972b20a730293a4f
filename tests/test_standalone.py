"""The repository stands alone: cloned anywhere, its docs and docstrings cite nothing outside it, and the
tests need nothing outside it (the API descriptions the emulators check against are vendored, with their
source and licence)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.fakes import telegram_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "tests" / "fakes" / "specs"
# Design notes that lived beside the repository while it was written, and absolute paths of that machine.
# (Spelled in pieces so that this file does not match itself.)
OUTSIDE = re.compile(r"\b(?:ENGINE|PLATFORMS|ARCHITECTURE)\.md\b|" + "/wo" + r"rk/|\bshared/" + "specs")
SKIP_DIRS = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}


def repository_files() -> list[Path]:
    """The files a clone has: git's list when there is one, else a walk without caches and environments."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout.decode()
        names = [n for n in listed.split("\0") if n]
        untracked = subprocess.run(
            ["git", "ls-files", "-z", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        names += [n for n in untracked.split("\0") if n]  # new files count before they are committed
        return [ROOT / n for n in names if (ROOT / n).is_file()]
    except (OSError, subprocess.SubprocessError):
        found = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            found += [Path(folder) / f for f in files]
        return found


def citations(paths: list[Path]) -> list[str]:
    hits = []
    for path in paths:
        if path.suffix in {".png", ".jpg", ".ico", ".gz", ".zip", ".pyc"} or path.parent == SPECS:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for no, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()[:160]}")
    return hits


def test_nothing_cites_a_file_outside_the_repository() -> None:
    files = [p for p in repository_files() if p.name != "README.md" or p.parent != ROOT]
    assert len(files) > 50  # the listing worked
    assert citations(files) == []


def test_the_readme_cites_no_file_outside_the_repository() -> None:
    assert citations([ROOT / "README.md"]) == []


def test_the_telegram_emulator_reads_the_vendored_description() -> None:
    path = telegram_spec.find_spec_path()
    assert path == SPECS / "telegram-bot-api.json" and path.is_file()
    assert telegram_spec.load_spec().version.startswith("Bot API")


def test_every_vendored_description_has_its_source_and_licence() -> None:
    readme = (SPECS / "README.md").read_text()
    descriptions = sorted(p.name for p in SPECS.glob("*.json"))
    assert descriptions == [
        "discord-openapi.json",
        "slack-events-api-asyncapi.json",
        "slack-web-openapi-v2.json",
        "telegram-bot-api.json",
    ]
    for name in descriptions:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"{name} is not described in tests/fakes/specs/README.md"
        assert "github.com/" in row and "MIT" in row, row
        licence = re.search(r"`(\w+-LICENSE)`", row)
        assert licence is not None and (SPECS / licence.group(1)).is_file(), row
