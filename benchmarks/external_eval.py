"""Detection scored on a labelled set that nobody on this project wrote.

    python benchmarks/external_eval.py FILE.json [FILE.json ...] [--json]

Each FILE is in the format of Microsoft Presidio's evaluation data
(github.com/microsoft/presidio-research, e.g. ``tests/data/generated_small.json`` or
``data/synth_dataset_v2.json``): a JSON list of records with ``full_text`` and
``spans`` of ``entity_type``, ``start_position``, ``end_position``. The files are not
part of this repository (they are Presidio's, under its licence); download one and
point this script at it.

Only the entity types that name one of aiguard's kinds are scored (the table below);
names, places, organisations and dates are left out, since aiguard's built-in
detectors do not look for them. Per kind:

- recall: labelled values that a finding of that kind covers (exactly, and at all);
- precision: findings of that kind that lie on a labelled value of that kind;
- findings of other kinds are listed as unlabelled findings: the set does not label
  them, so they are neither right nor wrong here (read them).

The scores are for aiguard.detect() with the default detectors, on each text as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiguard

#: Presidio entity type -> aiguard kind.
KINDS = {
    "CREDIT_CARD": "credit_card",
    "US_SSN": "us_ssn",
    "US_ITIN": "us_itin",
    "EMAIL_ADDRESS": "email",
    "EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "IBAN_CODE": "iban",
    "IBAN": "iban",
    "IP_ADDRESS": "ip_address",
}


def load(path: Path) -> list[dict[str, Any]]:
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise SystemExit(f"{path}: expected a JSON list of records")
    return records


def score(records: list[dict[str, Any]]) -> dict[str, Any]:
    labelled: Counter[str] = Counter()
    exact: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    found: Counter[str] = Counter()
    right: Counter[str] = Counter()
    other: Counter[str] = Counter()
    misses: list[tuple[str, str, str]] = []
    wrong: list[tuple[str, str, str]] = []
    scored_kinds = set(KINDS.values())
    for record in records:
        text = record["full_text"]
        spans = [
            (s["start_position"], s["end_position"], KINDS[s["entity_type"]])
            for s in record.get("spans", [])
            if s["entity_type"] in KINDS
        ]
        findings = aiguard.detect(text)
        for start, end, kind in spans:
            labelled[kind] += 1
            same = [f for f in findings if f.kind == kind]
            if any(f.start == start and f.end == end for f in same):
                exact[kind] += 1
            if any(f.start < end and start < f.end for f in same):
                covered[kind] += 1
            else:
                misses.append((kind, text[start:end], text))
        for finding in findings:
            if finding.kind not in scored_kinds:
                other[finding.kind] += 1
                continue
            found[finding.kind] += 1
            if any(
                k == finding.kind and finding.start < e and s < finding.end for s, e, k in spans
            ):
                right[finding.kind] += 1
            else:
                wrong.append((finding.kind, text[finding.start : finding.end], text))
    kinds = sorted(set(labelled) | set(found))
    table = {
        kind: {
            "labelled": labelled[kind],
            "recall_exact": exact[kind] / labelled[kind] if labelled[kind] else None,
            "recall": covered[kind] / labelled[kind] if labelled[kind] else None,
            "found": found[kind],
            "precision": right[kind] / found[kind] if found[kind] else None,
        }
        for kind in kinds
    }
    return {
        "records": len(records),
        "kinds": table,
        "unlabelled_findings": dict(other),
        "misses": misses,
        "wrong": wrong,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    records = [record for path in args.files for record in load(path)]
    result = score(records)
    out = sys.stderr if args.json else sys.stdout
    print(f"{result['records']} records from {', '.join(map(str, args.files))}", file=out)
    print("| kind | labelled | recall (exact span) | recall | found | precision |", file=out)
    print("| --- | ---: | ---: | ---: | ---: | ---: |", file=out)
    for kind, row in result["kinds"].items():
        print(
            f"| {kind} | {row['labelled']} | {_fmt(row['recall_exact'])} | "
            f"{_fmt(row['recall'])} | {row['found']} | {_fmt(row['precision'])} |",
            file=out,
        )
    print(f"unlabelled findings (not scored): {result['unlabelled_findings']}", file=out)
    for title, rows in (("missed", result["misses"]), ("not labelled so", result["wrong"])):
        for kind, value, text in rows[:40]:
            print(f"  {title}: {kind} {value!r} in {text[:120]!r}", file=out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k not in {"misses", "wrong"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
