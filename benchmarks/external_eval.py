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

    python benchmarks/external_eval.py --presidio-tests DIR [--json]

scores the recognizer unit tests of Presidio's analyzer instead (DIR is
``presidio-analyzer/tests`` of a checkout of github.com/microsoft/presidio): every
``pytest.mark.parametrize`` row with a text, an expected count and expected positions,
read with ``ast`` (not run). Per Presidio entity that names an aiguard kind: positives
(values the test expects Presidio to report at a score of 0.5 or more), weak positives
(values it reports only below 0.5, which Presidio drops without a context word), and
negatives (texts where the test expects no finding). Presidio's tests encode Presidio's
choices: a weak positive aiguard leaves alone (a bare nine-digit number) can be a
choice, not a miss, and so can a "negative" aiguard finds (a card number that fails
Luhn next to the word "card"). Read the listed cases.

    python benchmarks/external_eval.py --code [DIR] [--json]

counts secret findings (kinds ``password`` and ``secret``) in source code nobody here
wrote: every line of the ``*.py`` files under DIR (default: the running Python's
standard library, its tests left out) that holds a secret's key word and ``=`` or
``:``. Code names secrets everywhere (``password = self.password``); almost every such
finding is a false positive, so fewer is better. Listed with ``-v``. With
``--lines-before N`` each line is read as the end of a snippet holding up to N lines
before it (what the detectors see when code is pasted), and only findings on the line
itself count.

    python benchmarks/external_eval.py --secret-cases FILE [--json]

scores labelled secret cases: a JSON list of ``{"text", "expected", "secret"}``
(``expected`` true when the text holds a secret, ``secret`` the value when the case
names it), such as the cases of another secret scanner's test suite, extracted by
the reader. A positive counts as found when a ``password``/``secret``-family finding
covers the named value (or any such finding when none is named); a negative counts
when any such finding is made. Other tools' negatives encode their own rules (a value
their plugin for one provider rejects can still be a labelled secret here): read them.

    python benchmarks/external_eval.py --links [DIR] [-v] [--json]

shows where the answer's link rule (`aiguard.vault.tokens.in_link`) keeps a token, in
prose nobody here wrote: up to 100 words of each Markdown, reStructuredText, text and
package-metadata file under DIR (default: the running Python's site-packages; a fixed
sample), each replaced by a token as a value would be. A token kept inside a URL with a
scheme is the rule's plain case; the others (a host's label, a bare host's path, an
open tag) are listed with ``-v``: read them for tokens kept where no link is.

    python benchmarks/external_eval.py --spelled [DIR] [-v] [--json]

reads the same kinds of files under DIR (default: the running Python's site-packages
and standard library) in pieces of 250 characters, as a message would be, and counts
where digits read out as words (``four one one …``) are looked for: pieces with a
stretch long enough for nine digit words (the byte-mask gate), pieces with a unit of
nine digit words or more, and findings over such a unit (listed with ``-v``). Prose
counts things in words ("one or two"), so every unit here is a place to read.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiguard
from aiguard.classify._decode import (
    _SPELLED_MASK,
    _SPELLED_MIN_RUN,
    _spelled_units,
    detect_decoded,
)
from aiguard.classify.detectors import merge_findings
from aiguard.vault.tokens import in_host, in_link

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
    "US_DRIVER_LICENSE": "driver_license",
    "US_BANK_NUMBER": "account_number",
    "AGE": "age",
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


#: Presidio recognizer-test entities -> aiguard kind (passports of every country: one kind).
TEST_KINDS = {
    **KINDS,
    "US_ITIN": "us_itin",
    "UK_NINO": "uk_nino",
    "UK_NHS": "uk_nhs",
    "ES_NIF": "es_dni",
    "ES_NIE": "es_nie",
    "IT_FISCAL_CODE": "it_codice_fiscale",
    "IN_PAN": "in_pan",
    "IN_AADHAAR": "in_aadhaar",
    "ABA_ROUTING_NUMBER": "aba_routing",
    "MAC_ADDRESS": "mac_address",
    "SWIFT_CODE": "swift_bic",
    "DE_TAX_ID": "de_tax_id",
    "US_PASSPORT": "passport",
    "UK_PASSPORT": "passport",
    "ES_PASSPORT": "passport",
    "DE_PASSPORT": "passport",
    "IN_PASSPORT": "passport",
    "IT_PASSPORT": "passport",
    "FR_PASSPORT_NUMBER": "passport",
    "AU_TFN": "au_tfn",
    "AU_MEDICARE": "au_medicare",
    "SG_NRIC_FIN": "sg_nric",
    "PL_PESEL": "pl_pesel",
}
_TEXT_ARGS = ("text", "iban")
_POSITION_ARGS = ("expected_positions", "expected_res", "expected_position")
_SCORE_ARGS = ("expected_score_ranges", "expected_score", "expected_scores", "score", "max_score")


def _literal(node: ast.AST, names: dict[str, ast.AST]) -> Any:
    """A parametrize row's value: literals, names bound to literals, f-strings without
    placeholders, and "+" / "*" / unary minus between them."""
    if isinstance(node, ast.Name) and node.id in names:
        return _literal(names[node.id], names)
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_literal(e, names) for e in node.elts]
    if isinstance(node, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in node.values):
        return "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _literal(node.left, names), _literal(node.right, names)
        return left + right if isinstance(node.op, ast.Add) else left * right
    return ast.literal_eval(node)


def _entity_of(tree: ast.Module, names: dict[str, ast.AST]) -> str | None:
    """What the file's ``entities`` fixture returns (its recognizer's entity)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "entities":
            for sub in ast.walk(stmt):
                if isinstance(sub, ast.Return) and sub.value is not None:
                    value = _literal(sub.value, names)
                    return str(value[0]) if value else None
    return None


def _top_score(value: Any) -> float | None:
    """The highest score a test row accepts (None when it names none)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        scores = [_top_score(v) for v in value]
        known = [s for s in scores if s is not None]
        return max(known) if known else None
    return None


def load_presidio_tests(directory: Path) -> list[dict[str, Any]]:
    """The parametrized detection cases of ``test_*_recognizer.py`` in ``directory``:
    ``{"entity", "text", "spans", "weak"}`` (``spans`` empty for a negative)."""
    cases = []
    for path in sorted(directory.glob("test_*_recognizer.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            s.targets[0].id: s.value
            for s in tree.body
            if isinstance(s, ast.Assign)
            and len(s.targets) == 1
            and isinstance(s.targets[0], ast.Name)
        }
        fixture_entity = _entity_of(tree, names)
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for dec in fn.decorator_list:
                if not (
                    isinstance(dec, ast.Call)
                    and isinstance(dec.func, ast.Attribute)
                    and dec.func.attr == "parametrize"
                    and len(dec.args) >= 2
                ):
                    continue
                argnames = _literal(dec.args[0], names)
                if isinstance(argnames, str):
                    argnames = [a.strip() for a in argnames.split(",")]
                text_arg = next((a for a in _TEXT_ARGS if a in argnames), None)
                position_arg = next((a for a in _POSITION_ARGS if a in argnames), None)
                if text_arg is None or position_arg is None or "expected_len" not in argnames:
                    continue  # a validator's test, not a detection test
                score_arg = next((a for a in _SCORE_ARGS if a in argnames), None)
                for row in _literal(dec.args[1], names):
                    case = dict(zip(argnames, row, strict=True))
                    entities = case.get("entities") or [fixture_entity]
                    positions = case[position_arg] or []
                    if position_arg == "expected_position" and positions:
                        positions = [positions]
                    if case["expected_len"] == 0:
                        positions = []
                    elif len(positions) != case["expected_len"]:
                        continue  # a count without its positions: nothing to score
                    top = _top_score(case[score_arg]) if score_arg else None
                    cases.append(
                        {
                            "entity": entities[0],
                            "text": case[text_arg],
                            "spans": [tuple(p) for p in positions],
                            "weak": top is not None and top < 0.5,
                        }
                    )
    return cases


def score_presidio_tests(cases: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Counter[str]] = {}
    listed: list[tuple[str, str, str, list[tuple[str, str]]]] = []
    for case in cases:
        kind = TEST_KINDS.get(case["entity"])
        if kind is None:
            continue
        text = case["text"]
        findings = aiguard.detect(text)
        same = [f for f in findings if f.kind == kind]
        row = table.setdefault(case["entity"], Counter())
        shown = [(f.kind, text[f.start : f.end]) for f in findings]
        if not case["spans"]:
            row["negatives"] += 1
            if same:
                row["negatives_found"] += 1
                listed.append(("found, expected none", case["entity"], text, shown))
            continue
        group = "weak" if case["weak"] else "positives"
        for start, end in case["spans"]:
            row[group] += 1
            if any(f.start < end and start < f.end for f in same):
                row[f"{group}_found"] += 1
            else:
                listed.append((f"missed ({group})", case["entity"], text[start:end], shown))
    return {"entities": {k: dict(v) for k, v in sorted(table.items())}, "listed": listed}


def main_presidio_tests(directory: Path, as_json: bool) -> int:
    result = score_presidio_tests(load_presidio_tests(directory))
    out = sys.stderr if as_json else sys.stdout
    print(f"Presidio recognizer tests in {directory}", file=out)
    print("| entity | positives found | weak found | negatives found |", file=out)
    print("| --- | ---: | ---: | ---: |", file=out)
    for entity, row in result["entities"].items():
        cells = [
            f"{row.get(g + '_found', 0)}/{row[g]}" if row.get(g) else "-"
            for g in ("positives", "weak", "negatives")
        ]
        print(f"| {entity} | {' | '.join(cells)} |", file=out)
    for why, entity, value, shown in result["listed"]:
        print(f"  {why}: {entity} {value!r} (aiguard: {shown})", file=out)
    if as_json:
        print(json.dumps(result["entities"]))
    return 0


#: Kinds that are credentials: what --code and --secret-cases count.
SECRET_KINDS = frozenset(
    {
        "password",
        "secret",
        "aws_access_key",
        "aws_secret_key",
        "github_token",
        "slack_token",
        "slack_webhook",
        "openai_key",
        "anthropic_key",
        "stripe_key",
        "google_api_key",
        "jwt",
        "private_key",
        "url_credentials",
    }
)
_KEY_WORD = re.compile(r"pass|pwd|secret|token|key|credential", re.IGNORECASE)


def main_code(directory: Path | None, as_json: bool, verbose: bool, lines_before: int = 0) -> int:
    root = directory or Path(sysconfig.get_paths()["stdlib"])
    lines = hits = 0
    shown: list[str] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).parts
        if directory is None and (
            "test" in relative or "tests" in relative or "site-packages" in relative
        ):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        file_lines = text.splitlines()
        for number, line in enumerate(file_lines):
            if (
                len(line) >= 400
                or not _KEY_WORD.search(line)
                or ("=" not in line and ":" not in line)
            ):
                continue
            lines += 1
            # The line as part of a pasted snippet: the lines before it are context, and
            # only findings on the line itself count.
            snippet = "\n".join(file_lines[max(0, number - lines_before) : number + 1])
            offset = len(snippet) - len(line)
            for finding in aiguard.detect(snippet):
                if finding.kind in {"password", "secret"} and finding.start >= offset:
                    hits += 1
                    value = snippet[finding.start : finding.end]
                    shown.append(f"  {finding.kind} {value!r} in {line.strip()[:120]!r}")
    out = sys.stderr if as_json else sys.stdout
    context = f" (each read with up to {lines_before} lines before it)" if lines_before else ""
    print(
        f"code under {root}: {lines} lines with a secret's key word{context}; "
        f"{hits} password/secret findings",
        file=out,
    )
    if verbose:
        print("\n".join(shown), file=out)
    if as_json:
        print(json.dumps({"root": str(root), "lines": lines, "findings": hits}))
    return 0


def main_secret_cases(path: Path, as_json: bool, verbose: bool) -> int:
    cases = json.loads(path.read_text(encoding="utf-8"))
    found = positives = flagged = negatives = 0
    listed: list[str] = []
    for case in cases:
        text = case["text"]
        findings = [f for f in aiguard.detect(text) if f.kind in SECRET_KINDS]
        if case["expected"]:
            positives += 1
            secret = case.get("secret")
            if secret and secret in text:
                start = text.index(secret)
                end = start + len(secret)
                hit = any(f.start < end and start < f.end for f in findings)
            else:
                hit = bool(findings)
            found += hit
            if not hit:
                listed.append(f"  missed: {text[:120]!r}")
        else:
            negatives += 1
            flagged += bool(findings)
            if findings:
                listed.append(f"  flagged: {text[:120]!r}")
    out = sys.stderr if as_json else sys.stdout
    print(
        f"{path}: positives found {found}/{positives}; negatives flagged {flagged}/{negatives}",
        file=out,
    )
    if verbose:
        print("\n".join(listed), file=out)
    if as_json:
        print(
            json.dumps(
                {"positives": positives, "found": found, "negatives": negatives, "flagged": flagged}
            )
        )
    return 0


def _tell(
    summary: str, listed: list[str], figures: dict[str, Any], as_json: bool, verbose: bool
) -> int:
    """Print a prose count: its summary, its cases with ``verbose``, its figures as
    JSON on stdout with ``as_json`` (the text then goes to stderr)."""
    out = sys.stderr if as_json else sys.stdout
    print(summary, file=out)
    if verbose:
        print("\n".join(listed), file=out)
    if as_json:
        print(json.dumps(figures))
    return 0


def _prose_files(roots: list[Path]) -> list[Path]:
    return sorted(
        path
        for root in roots
        for pattern in ("*.md", "*.rst", "*.txt", "METADATA")
        for path in root.rglob(pattern)
        if path.is_file()
    )


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_@.+-]*[A-Za-z0-9]|[A-Za-z0-9]")
_SCHEME_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`)\]]+")
_LINK_TOKEN = "[EMAIL_7Q2KX9M4T1B8C]"


def main_links(directory: Path | None, as_json: bool, verbose: bool, per_file: int = 100) -> int:
    """Where the link rule keeps a token, in prose nobody here wrote: words of Markdown,
    reStructuredText and text files (default: the docs and package metadata under the
    running Python's site-packages), each replaced by a token as a value would be."""
    root = directory or Path(sysconfig.get_paths()["purelib"])
    paths = _prose_files([root])
    picker = random.Random(20261207)
    positions = in_url = host = elsewhere = 0
    listed: list[str] = []
    token = _LINK_TOKEN
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        words = list(_WORD.finditer(text))
        urls = [m.span() for m in _SCHEME_URL.finditer(text)]
        for word in picker.sample(words, min(len(words), per_file)):
            start, end = word.span()
            positions += 1
            window = text[max(0, start - 2100) : start] + token + text[end : end + 300]
            at = min(start, 2100)
            if not in_link(window, at, at + len(token)):
                continue
            if any(a <= start < b for a, b in urls):
                in_url += 1  # a word of a URL with a scheme: the rule's first case
                continue
            if in_host(window, at + len(token)):
                host += 1
                reason = "host label"
            else:
                elsewhere += 1
                reason = "link"
            shown = window[max(0, at - 50) : at + len(token) + 40].replace("\n", "\\n")
            listed.append(f"  {reason}: {shown!r}")
    summary = (
        f"prose under {root}: {len(paths)} files, {positions} words replaced by a token; "
        f"kept in a URL with a scheme {in_url}, as a host's label {host}, "
        f"in another link {elsewhere}"
    )
    figures = {"files": len(paths), "positions": positions, "in_url": in_url}
    figures.update(host_label=host, other_link=elsewhere)
    return _tell(summary, listed, figures, as_json, verbose)


def main_spelled(directory: Path | None, as_json: bool, verbose: bool) -> int:
    """Where digits read out as words are looked for and found, in prose nobody here wrote."""
    roots = (
        [directory]
        if directory
        else [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]
    )
    guard = aiguard.Guard()
    pieces = gated = with_unit = findings = 0
    scan_ns = 0
    listed: list[str] = []
    for path in _prose_files(roots):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for at in range(0, len(text), 250):
            piece = text[at : at + 250]
            pieces += 1
            started = time.perf_counter_ns()
            raw = piece.encode("utf-8", "surrogatepass")
            units = _spelled_units(piece, raw)
            scan_ns += time.perf_counter_ns() - started
            gated += raw.translate(_SPELLED_MASK).find(_SPELLED_MIN_RUN) != -1
            if not units:
                continue
            with_unit += 1
            found = merge_findings(detect_decoded(guard.detectors, piece))
            on_units = [f for f in found if any(s <= f.start < e for s, e, _ in units)]
            findings += len(on_units)
            for start, end, _ in units:
                kinds = ",".join(f.kind for f in on_units if start <= f.start < end) or "none"
                listed.append(f"  {kinds}: {piece[start:end]!r} ({path.name})")
    mean_us = scan_ns / max(pieces, 1) / 1000
    summary = (
        f"prose under {', '.join(map(str, roots))}: {pieces} pieces of 250 characters; "
        f"a stretch for nine digit words in {gated} ({gated / max(pieces, 1):.1%}), "
        f"a unit in {with_unit}, findings over a unit {findings}; "
        f"the scan for words {mean_us:.2f} µs a piece"
    )
    figures: dict[str, Any] = {"pieces": pieces, "gated": gated, "with_unit": with_unit}
    figures.update(findings=findings, scan_us=round(mean_us, 3))
    return _tell(summary, listed, figures, as_json, verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument(
        "--presidio-tests",
        type=Path,
        metavar="DIR",
        help="score Presidio's recognizer tests (presidio-analyzer/tests of a checkout)",
    )
    parser.add_argument(
        "--code",
        nargs="?",
        const="",
        metavar="DIR",
        help="count secret findings in Python source (default: the standard library)",
    )
    parser.add_argument(
        "--lines-before",
        type=int,
        default=0,
        metavar="N",
        help="with --code: read each line with up to N lines before it, as a pasted snippet",
    )
    parser.add_argument(
        "--secret-cases", type=Path, metavar="FILE", help="score labelled secret cases (JSON)"
    )
    parser.add_argument(
        "--links",
        nargs="?",
        const="",
        metavar="DIR",
        help="where tokens in prose stay tokens as links (default: site-packages' docs)",
    )
    parser.add_argument(
        "--spelled",
        nargs="?",
        const="",
        metavar="DIR",
        help="where digits read out as words are found in prose (default: docs on disk)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list each case")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    if args.presidio_tests is not None:
        return main_presidio_tests(args.presidio_tests, args.json)
    if args.code is not None:
        return main_code(
            Path(args.code) if args.code else None, args.json, args.verbose, args.lines_before
        )
    if args.secret_cases is not None:
        return main_secret_cases(args.secret_cases, args.json, args.verbose)
    if args.links is not None:
        return main_links(Path(args.links) if args.links else None, args.json, args.verbose)
    if args.spelled is not None:
        return main_spelled(Path(args.spelled) if args.spelled else None, args.json, args.verbose)
    if not args.files:
        parser.error("give evaluation files, or --presidio-tests DIR")
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
