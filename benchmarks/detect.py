"""Detection quality and speed on a generated labelled corpus (see corpus.py).

    python benchmarks/detect.py [--texts 2000] [--repeat 5] [--kind-table] [--json]

Reports, per density (dense: a value or distractor every ~200 characters; sparse:
about one per kilobyte): per-kind precision, recall and F1 (a finding matches a label
of the same kind when their spans overlap), the share of distractors any finding
touched, throughput in MB/s (characters of text per second, best of --repeat runs, one
core), and the median and p99 time per text in microseconds. When Presidio or
pii-anon import in this interpreter, they run on the same texts and the ratio is
printed; they are not installed by default. With ``--json`` the report goes to stderr
and stdout gets the figures as one JSON object (what benchmarks/run_all.py reads).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import report
from corpus import Text, generate

from aiguard.classify import builtin_detector, merge_findings

Detect = Callable[[str], list[tuple[int, int, str]]]


def aiguard_detect() -> Detect:
    detector = builtin_detector()

    def run(text: str) -> list[tuple[int, int, str]]:
        return [(f.start, f.end, f.kind) for f in merge_findings(detector.detect(text))]

    return run


def score(texts: list[Text], detect: Detect) -> tuple[dict[str, Counter[str]], float, Counter[str]]:
    per_kind: dict[str, Counter[str]] = {}
    hit_distractors = 0
    total_distractors = 0
    hits_by_type: Counter[str] = Counter()
    for item in texts:
        found = detect(item.text)
        for s, e, kind in item.labels:
            c = per_kind.setdefault(kind, Counter())
            c["labels"] += 1
            if any(k == kind and fs < e and fe > s for fs, fe, k in found):
                c["tp_recall"] += 1
        for fs, fe, kind in found:
            c = per_kind.setdefault(kind, Counter())
            c["found"] += 1
            if any(k == kind and fs < e and fe > s for s, e, k in item.labels):
                c["tp_precision"] += 1
        for s, e, name in item.distractors:
            total_distractors += 1
            if any(fs < e and fe > s for fs, fe, _ in found):
                hit_distractors += 1
                hits_by_type[name] += 1
    return per_kind, hit_distractors / max(1, total_distractors), hits_by_type


def timing(texts: list[Text], detect: Detect, repeat: int) -> tuple[float, float, float]:
    chars = sum(len(t.text) for t in texts)
    best = float("inf")
    per_text: list[float] = []
    for _ in range(repeat):
        samples = []
        start = time.perf_counter()
        for item in texts:
            t0 = time.perf_counter_ns()
            detect(item.text)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, per_text = elapsed, samples
    per_text.sort()
    p99 = per_text[min(len(per_text) - 1, int(len(per_text) * 0.99))]
    return chars / best / 1e6, statistics.median(per_text), p99


def _peers() -> dict[str, Detect]:
    """Peers installed in this interpreter (``pip install -e ".[bench]"`` plus the peers).

    Presidio runs its predefined pattern recognizers only (no spaCy model, which it would
    otherwise try to download); pii-anon runs its default regex engine.
    """
    peers: dict[str, Detect] = {}
    try:
        from presidio_analyzer import RecognizerRegistry  # type: ignore[import-not-found]
    except ImportError:
        print("presidio-analyzer is not installed: comparison skipped")
    else:
        registry = RecognizerRegistry()
        registry.load_predefined_recognizers(languages=["en"])
        nlp_based = ("Spacy", "Stanza", "Transformers", "GLiNER", "Lm")
        recognizers = [
            r for r in registry.recognizers if not type(r).__name__.startswith(nlp_based)
        ]

        def presidio(text: str) -> list[tuple[int, int, str]]:
            found = []
            for recognizer in recognizers:
                for r in recognizer.analyze(text, recognizer.supported_entities, None) or ():
                    found.append((r.start, r.end, r.entity_type.lower()))
            return found

        peers["presidio (patterns)"] = presidio
    try:
        import pii_anon  # type: ignore[import-not-found]
        from pii_anon.types import (  # type: ignore[import-not-found]
            ProcessingProfileSpec,
            SegmentationPlan,
        )
    except ImportError:
        print("pii-anon is not installed: comparison skipped")
    else:
        orchestrator = pii_anon.PIIOrchestrator("bench-key-" + "0" * 22)
        profile = ProcessingProfileSpec(profile_id="bench")
        plan = SegmentationPlan()

        def pii_anon_detect(text: str) -> list[tuple[int, int, str]]:
            result = orchestrator.detect_only(
                {"text": text}, profile=profile, segmentation=plan, scope="bench", token_version=1
            )
            return [
                (f["span"]["start"], f["span"]["end"], str(f["entity_type"]).lower())
                for f in result.get("ensemble_findings", [])
            ]

        peers["pii-anon"] = pii_anon_detect
    return peers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--distractor-table", action="store_true")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    return report(lambda: measure(args), args.json)


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Run the benchmark, print its report and return the figures."""
    figures: dict[str, object] = {"texts": args.texts, "repeat": args.repeat}
    detect = aiguard_detect()
    peers = _peers()
    figures["peers"] = sorted(peers)
    for density in ("dense", "sparse"):
        texts = generate(args.seed, density, args.texts)
        chars = sum(len(t.text) for t in texts)
        labels = sum(len(t.labels) for t in texts)
        distractors = sum(len(t.distractors) for t in texts)
        per_kind, dhit, hits_by_type = score(texts, detect)
        mbs, median, p99 = timing(texts, detect, args.repeat)
        print(
            f"\n## {density}: {len(texts)} texts, {chars / 1e6:.2f} MB, {labels} values, "
            f"{distractors} distractors\n"
        )
        print("| kind | values | found | precision | recall | F1 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        kinds: dict[str, dict[str, float]] = {}
        for kind in sorted(per_kind):
            c = per_kind[kind]
            p = c["tp_precision"] / c["found"] if c["found"] else float("nan")
            r = c["tp_recall"] / c["labels"] if c["labels"] else float("nan")
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            print(f"| {kind} | {c['labels']} | {c['found']} | {p:.3f} | {r:.3f} | {f1:.3f} |")
            kinds[kind] = {"labels": c["labels"], "found": c["found"], "precision": p, "recall": r}
        print(f"\ndistractor hit rate: {dhit:.2%}")
        if args.distractor_table and hits_by_type:
            print(
                "distractors hit: " + ", ".join(f"{k}={n}" for k, n in hits_by_type.most_common())
            )
        print(f"aiguard: {mbs:.1f} MB/s, median {median:.0f} µs/text, p99 {p99:.0f} µs/text")
        found = {
            "texts": len(texts),
            "mb": chars / 1e6,
            "labels": labels,
            "distractors": distractors,
            "distractor_hit_rate": dhit,
            "mb_per_s": mbs,
            "median_us": median,
            "p99_us": p99,
            "kinds": kinds,
            "peers": {},
        }
        for name, peer in peers.items():
            pmbs, pmed, pp99 = timing(texts[: max(50, len(texts) // 20)], peer, 1)
            print(
                f"{name}: {pmbs:.2f} MB/s, median {pmed:.0f} µs/text, p99 {pp99:.0f} µs/text "
                f"(aiguard is {mbs / pmbs:.0f}x faster)"
            )
            found["peers"][name] = {"mb_per_s": pmbs, "median_us": pmed, "p99_us": pp99}
        figures[density] = found
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
