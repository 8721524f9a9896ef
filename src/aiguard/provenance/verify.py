"""Verifying a provenance log: every record intact, in order, chained from genesis, and
covered by valid signed checkpoints where the log is signed."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canonical import CanonicalError, canonical_bytes
from .chain import GENESIS_PREV, EventRecord, hashed_bytes, leaf_digest
from .checkpoint import MerkleFrontier, ParsedNote, Verifier, parse_note

__all__ = [
    "VerifyFailure",
    "VerifyOptions",
    "VerifyReport",
    "verify_file",
    "verify_lines",
    "verify_records",
]


@dataclass(frozen=True, slots=True)
class VerifyFailure:
    """The first record that does not verify: its 1-based line, its sequence number, why."""

    line: int
    seq: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """What the verifier trusts.

    ``public_key``: checkpoints must be signed by this key (else the key the log's own
    genesis names is used, which only proves self-consistency). ``checkpoint``: a
    checkpoint note published elsewhere; the log must contain it, so a log cut back to
    an earlier checkpoint is caught. ``allow_unsealed``: accept records after the last
    checkpoint of a signed log (a log still being written).
    """

    public_key: Verifier | None = None
    checkpoint: str | None = None
    allow_unsealed: bool = False


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    records: int
    log: str | None = None
    head_seq: int | None = None
    head_digest: str | None = None
    failure: VerifyFailure | None = None
    checkpoints: int = 0
    #: "trusted key" (checked against a key you supplied), "self-attested" (the log's
    #: own key), or "unsigned" (hash chain only).
    attestation: str = "unsigned"
    unsealed: int = 0

    def summary(self) -> str:
        if not self.ok:
            failure = self.failure
            assert failure is not None
            seq = "?" if failure.seq is None else failure.seq
            return f"FAILED at line {failure.line} (seq {seq}): {failure.reason}"
        text = (
            f"OK: {self.records} records of log {self.log!r} verify "
            f"(head seq {self.head_seq}, digest {str(self.head_digest)[:16]}…)"
        )
        if self.attestation == "unsigned":
            return (
                text + "; self-attested only: no signed checkpoints, so records dropped "
                "from the end cannot be detected"
            )
        text += f"; {self.checkpoints} signed checkpoint(s) valid"
        if self.attestation == "self-attested":
            text += (
                " against the key the log itself names (self-attested only; pass "
                "--public-key to check against a key you trust)"
            )
        else:
            text += " against the trusted public key"
        if self.unsealed:
            text += f"; {self.unsealed} record(s) after the last checkpoint are not yet sealed"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "records": self.records,
            "log": self.log,
            "head_seq": self.head_seq,
            "head_digest": self.head_digest,
            "checkpoints": self.checkpoints,
            "attestation": self.attestation,
            "unsealed": self.unsealed,
        }
        if self.failure is not None:
            out["failure"] = {
                "line": self.failure.line,
                "seq": self.failure.seq,
                "reason": self.failure.reason,
            }
        return out


class _Checker:
    def __init__(self, options: VerifyOptions) -> None:
        self.options = options
        self.log: str | None = None
        self.prev = GENESIS_PREV
        self.expected_seq = 0
        self.count = 0
        self.frontier = MerkleFrontier()
        self.key: Verifier | None = options.public_key
        self.attestation = "trusted key" if options.public_key is not None else "unsigned"
        self.checkpoints = 0
        self.last_checkpoint_line = 0
        self.first_unsealed_line: int | None = None
        self.unsealed = 0
        self.published: ParsedNote | None = None
        self.published_seen = False
        if options.checkpoint is not None:
            self.published = parse_note(options.checkpoint)

    def check(
        self, number: int, raw: bytes | None, document: Mapping[str, Any]
    ) -> VerifyFailure | None:
        seq_value = document.get("seq")
        seq = seq_value if isinstance(seq_value, int) and not isinstance(seq_value, bool) else None

        def fail(reason: str) -> VerifyFailure:
            return VerifyFailure(number, seq, reason)

        digest = document.get("digest")
        if not isinstance(digest, str):
            return fail("record has no digest field")
        if raw is not None:
            # Integrity needs no re-encoding: the digest covers the line's own bytes.
            hashed = hashed_bytes(raw)
            if hashed is None or raw[-66:-2] != digest.encode("ascii", "replace"):
                return fail("record is not a sealed line (its digest member was edited)")
        else:
            body = {key: value for key, value in document.items() if key != "digest"}
            try:
                hashed = canonical_bytes(body)
            except CanonicalError as exc:
                return fail(f"record is outside the event domain: {exc}")
        if not hmac.compare_digest(leaf_digest(hashed), digest):
            return fail("digest does not match the record's content (the record was changed)")
        if seq is None:
            return fail("record has no integer seq")
        if self.count == 0:
            if document.get("type") != "genesis" or seq != 0:
                return fail("the log does not start with its genesis record (seq 0)")
            self.log = str(document.get("log"))
            failure = self._genesis_signer(document, fail)
            if failure is not None:
                return failure
        elif document.get("log") != self.log:
            return fail(f"record belongs to log {document.get('log')!r}, not {self.log!r}")
        if seq != self.expected_seq:
            if seq < self.expected_seq:
                return fail(f"expected seq {self.expected_seq}; records were reordered or repeated")
            return fail(f"expected seq {self.expected_seq}; records are missing before this one")
        if document.get("prev") != self.prev:
            return fail("prev does not match the digest of the record before it")
        if document.get("type") == "checkpoint":
            failure = self._checkpoint(document, seq, fail)
            if failure is not None:
                return failure
            self.last_checkpoint_line = number
            self.first_unsealed_line = None
            self.unsealed = 0
        else:
            if self.first_unsealed_line is None:
                self.first_unsealed_line = number
            self.unsealed += 1
        self.frontier.append(bytes.fromhex(digest))
        self.prev = digest
        self.expected_seq += 1
        self.count += 1
        return None

    def _genesis_signer(
        self, document: Mapping[str, Any], fail: Callable[[str], VerifyFailure]
    ) -> VerifyFailure | None:
        signer = document.get("signer")
        if not isinstance(signer, Mapping):
            return None
        try:
            declared = Verifier.from_vkey(str(signer.get("vkey", "")))
        except ValueError as exc:
            return fail(f"the genesis record names an unusable signing key: {exc}")
        if self.key is None:
            self.key = declared
            self.attestation = "self-attested"
        return None

    def _checkpoint(
        self, document: Mapping[str, Any], seq: int, fail: Callable[[str], VerifyFailure]
    ) -> VerifyFailure | None:
        checkpoint = document.get("checkpoint")
        if not isinstance(checkpoint, Mapping):
            return fail("checkpoint record has no checkpoint body")
        if checkpoint.get("size") != seq:
            return fail("checkpoint size does not match its position in the log")
        root = self.frontier.root()
        if checkpoint.get("root") != base64.b64encode(root).decode():
            return fail("checkpoint root does not match the records before it")
        try:
            note = parse_note(str(checkpoint.get("note", "")))
        except ValueError as exc:
            return fail(f"checkpoint note is malformed: {exc}")
        if note.origin != self.log or note.size != seq or note.root != root:
            return fail("checkpoint note does not commit to this log, size and root")
        if self.key is None:
            return fail("checkpoint cannot be checked: no public key given and none in genesis")
        if not self.key.verify(note):
            return fail(f"checkpoint signature is not valid for key {self.key.name!r}")
        self.checkpoints += 1
        published = self.published
        if published is not None and published.size == seq:
            if published.root != root:
                return fail("the published checkpoint of this size has another root (fork)")
            self.published_seen = True
        return None

    def finish(self) -> VerifyFailure | None:
        if self.count == 0:
            return VerifyFailure(1, None, "the log is empty")
        if self.published is not None and not self.published_seen:
            if self.published.size >= self.count:
                return VerifyFailure(
                    self.count,
                    self.expected_seq - 1,
                    f"the log ends before the published checkpoint (size {self.published.size}):"
                    " records were removed from the end",
                )
            return VerifyFailure(self.count, None, "the published checkpoint is not in this log")
        signed = self.attestation != "unsigned"
        if signed and self.unsealed and not self.options.allow_unsealed:
            line = self.first_unsealed_line or self.count
            return VerifyFailure(
                line,
                self.expected_seq - self.unsealed,
                f"the last {self.unsealed} record(s) are not covered by a signed checkpoint: "
                "the log was cut after its last checkpoint, or its writer has not sealed "
                "them yet (--allow-unsealed accepts a log still being written)",
            )
        return None

    def report(self, failure: VerifyFailure | None) -> VerifyReport:
        return VerifyReport(
            ok=failure is None,
            records=self.count,
            log=self.log,
            head_seq=self.expected_seq - 1 if self.count else None,
            head_digest=self.prev if self.count else None,
            failure=failure,
            checkpoints=self.checkpoints,
            attestation=self.attestation,
            unsealed=self.unsealed,
        )


def verify_lines(
    lines: Iterable[bytes],
    options: VerifyOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify raw JSONL lines, each with its trailing newline (the last may lack it)."""
    checker = _Checker(options or VerifyOptions())
    for number, raw in enumerate(lines, start=1):
        if progress is not None and number % 10_000 == 0:
            progress(number)
        if not raw.endswith(b"\n"):  # only the last line can lack it
            return checker.report(
                VerifyFailure(
                    number,
                    None,
                    "torn last line: the record is incomplete (the writer stopped mid-record)",
                )
            )
        body = raw[:-1]
        try:
            document = json.loads(body)
        except ValueError:
            return checker.report(VerifyFailure(number, None, "line is not valid JSON"))
        if not isinstance(document, dict):
            return checker.report(VerifyFailure(number, None, "line is not a JSON object"))
        failure = checker.check(number, body, document)
        if failure is not None:
            return checker.report(failure)
    return checker.report(checker.finish())


def _file_lines(paths: list[Path]) -> Iterator[bytes]:
    for index, path in enumerate(paths):
        with open(path, "rb") as handle:
            for line in handle:
                if index < len(paths) - 1 and not line.endswith(b"\n"):
                    # A segment closed by rotation ends on a full line; this one was cut.
                    yield line + b"\n"
                else:
                    yield line


def verify_file(
    path: str | Path,
    options: VerifyOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify a JSONL provenance log, streaming; rotated segments of it are included.

    Raises OSError when the file cannot be read.
    """
    from .sinks import log_segments

    target = Path(path)
    with open(target, "rb"):
        pass  # surface a missing or unreadable file as OSError before verifying
    return verify_lines(_file_lines(log_segments(target)), options, progress)


def verify_records(
    records: Iterable[EventRecord | Mapping[str, Any]],
    options: VerifyOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify records or event documents (from `InMemorySink`, SQLite or PostgreSQL)."""
    checker = _Checker(options or VerifyOptions())
    for number, item in enumerate(records, start=1):
        if progress is not None and number % 10_000 == 0:
            progress(number)
        if isinstance(item, EventRecord):
            raw: bytes | None = item.line
            document = item.document
        else:
            raw, document = None, item
        failure = checker.check(number, raw, document)
        if failure is not None:
            return checker.report(failure)
    return checker.report(checker.finish())
