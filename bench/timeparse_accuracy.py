"""How well the time parser reads what people type: the phrasing corpus, scored.

    python -m bench.timeparse_accuracy [--corpus PATH] [--show]

For every phrasing in ``tests/core/data/phrasings.tsv`` (hand-written: the text, the moment and zone it is
typed in, and what a careful reader makes of it), ``split_when_and_title`` is run and its outcome sorted:

* exact — the same instant and title, or refused as expected;
* silent misreading — accepted, but a different instant or title than the reader's, or accepted where the
  reader would have refused: the failure this parser exists to prevent (target: 0);
* refused, readable — refused where the reader would have read it (a nuisance, not a misreading);
* refused, other reason — refused as expected, with another explanation.

Also prints the parse time (median and 99th percentile per phrasing). Target: no silent misreading,
>= 97 % exact, a parse well under 20 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from core.errors import UserError
from core.timeparse import split_when_and_title

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "core" / "data" / "phrasings.tsv"
EXACT_TARGET = 0.97


@dataclass(frozen=True, slots=True)
class Case:
    line: int
    now: datetime
    zone: str
    text: str
    at: datetime | None  # None: refused
    key: str | None  # the error key when refused
    title: str


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    verdict: str  # "exact", "misread", "refused", "other_refusal"
    got: str  # what the parser said, for the report


def load(path: Path = CORPUS) -> list[Case]:
    cases: list[Case] = []
    now: datetime | None = None
    zone = "UTC"
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.startswith("@now "):
            _, instant, zone = raw.split()
            now = datetime.fromisoformat(instant.replace("Z", "+00:00"))
            continue
        if now is None:
            raise ValueError(f"{path}:{number}: a phrasing before any @now line")
        text, expected, *rest = raw.split("\t")
        title = rest[0] if rest else ""
        if expected.startswith("!"):
            cases.append(Case(number, now, zone, text, None, expected[1:], ""))
        else:
            cases.append(Case(number, now, zone, text, _instant(expected, zone), None, title))
    return cases


def _instant(expected: str, zone: str) -> datetime:
    """ "2026-11-26 20:00" (in ``zone``), "2026-11-26 20:00 America/New_York", "2026-11-26T20:00Z"."""
    if expected.endswith("Z"):
        return datetime.fromisoformat(expected[:-1]).replace(tzinfo=UTC)
    wall, _, other = expected.partition(" ")
    clock, _, named = other.partition(" ")
    local = datetime.fromisoformat(f"{wall} {clock}")
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    return local.replace(tzinfo=ZoneInfo(named or zone)).astimezone(UTC)


def judge(case: Case) -> Outcome:
    try:
        parsed, title = split_when_and_title(case.text, now=case.now, tz=case.zone)
    except UserError as e:
        verdict = ("exact" if e.key == case.key else "other_refusal") if case.at is None else "refused"
        return Outcome(case, verdict, f"refused {e.key} {e.params}")
    except Exception as e:  # a crash is a bug: counted as a misreading, shown in full
        return Outcome(case, "misread", f"crashed: {e!r}")
    got = f"{parsed.local.isoformat()} | {title}"
    if case.at is not None and parsed.at == case.at and title == case.title:
        return Outcome(case, "exact", got)
    return Outcome(case, "misread", got)


def timings(cases: list[Case], rounds: int = 3) -> list[float]:
    """Seconds per phrasing (the best of ``rounds``: the machine is shared)."""
    result = []
    for case in cases:
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            with contextlib.suppress(Exception):
                split_when_and_title(case.text, now=case.now, tz=case.zone)
            best = min(best, time.perf_counter() - start)
        result.append(best)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--show", action="store_true", help="list every phrasing not read exactly")
    args = parser.parse_args(argv)
    cases = load(args.corpus)
    outcomes = [judge(case) for case in cases]
    counts = Counter(o.verdict for o in outcomes)
    total = len(outcomes)
    exact = counts["exact"]
    print(f"time parser corpus: {total} phrasings ({args.corpus.name})")
    print(f"  exact                  {exact:4d}  {exact / total:7.2%}   target >= {EXACT_TARGET:.0%}")
    print(f"  silent misreadings     {counts['misread']:4d}            target 0")
    print(f"  refused, readable      {counts['refused']:4d}")
    print(f"  refused, other reason  {counts['other_refusal']:4d}")
    times = sorted(timings(cases))
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"  parse time             median {statistics.median(times) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
        f"max {times[-1] * 1e3:.2f} ms   target < 20 ms"
    )
    if args.show:
        for o in outcomes:
            if o.verdict != "exact":
                c = o.case
                want = (
                    f"refused {c.key}"
                    if c.at is None
                    else f"{c.at.astimezone(ZoneInfo(c.zone)).isoformat()} | {c.title}"
                )
                print(f"{o.verdict:13s} line {c.line}: {c.text!r}\n    want {want}\n    got  {o.got}")
    return 0 if counts["misread"] == 0 and exact / total >= EXACT_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
