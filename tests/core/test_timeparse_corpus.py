"""The phrasing corpus (tests/core/data/phrasings.tsv): every phrasing read exactly as a careful person reads it.

The corpus was written by hand from the reader's side; ``python -m bench.timeparse_accuracy`` prints the same
comparison as figures (accuracy, silent misreadings, parse time).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from bench.timeparse_accuracy import Case, judge, load
from core.errors import UserError
from core.texts import t
from core.timeparse import split_when_and_title

CASES = load()


def test_the_corpus_is_large_and_covers_both_languages() -> None:
    assert len(CASES) >= 400
    french = [
        c for c in CASES if any(w in c.text.lower() for w in ("demain", "dans ", "ce soir", "à ", "h "))
    ]
    assert len(french) >= 120
    assert sum(c.at is None for c in CASES) >= 60  # refusals are part of reading well


@pytest.mark.parametrize("case", CASES, ids=[f"{c.line}:{c.text}" for c in CASES])
def test_read_as_a_careful_person_reads_it(case: Case) -> None:
    outcome = judge(case)
    if case.at is None:
        want = f"refused {case.key}"
    else:
        want = f"{case.at.astimezone(ZoneInfo(case.zone)).isoformat()} | {case.title}"
    assert outcome.verdict == "exact", f"want {want}, got {outcome.got}"


@pytest.mark.parametrize("case", [c for c in CASES if c.at is None], ids=lambda c: f"{c.line}:{c.text}")
def test_every_refusal_renders_in_both_languages(case: Case) -> None:
    with pytest.raises(UserError) as info:
        split_when_and_title(case.text, now=case.now, tz=case.zone)
    for locale in ("en", "fr"):
        shown = t(locale, info.value.key, **info.value.params)
        assert "{" not in shown and shown.strip()
