"""Preparing training data: consent filter, protection by policy, manifest, ledger.

``prepare_dataset(guard, "in.jsonl", "out.jsonl", destination="trainer")`` (and
``aiguard dataset prepare IN.jsonl --destination D --out OUT.jsonl``) reads JSON
Lines and writes only the records whose data subject has a valid consent for the
purpose (``model_training`` by default) and the destination, each protected the way
the policy protects a call to that destination: every string (and every long integer)
goes through the guard's detectors and the policy's action per kind and level;
tokens come from the guard's vault in batches (one transaction per batch). Beside the
output it writes ``OUT.manifest.json``: SHA-256 of input and output, a digest of the
policy, counts kept and dropped by reason, the lines that could not be used, and
times. The training-use ledger learns which subjects went into which dataset.

The input is streamed line by line and the output written in batches, so memory does
not grow with the file. A line that is not a JSON object, a record without a subject,
a record without consent and a record holding a kind the policy blocks are dropped,
never copied through; the output appears (atomically renamed) only when the whole run
succeeded. See docs/dataset.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from ..context import CallContext
from ..errors import (
    AIGuardError,
    ConsentRequired,
    DestinationRevoked,
    PolicyDenied,
    UnknownDestination,
    VaultError,
)
from ..pipeline.call import Call
from ..vault.tokens import Scope

if TYPE_CHECKING:
    from ..consent.store import ConsentRecord
    from ..pipeline.host import GuardHost

__all__ = [
    "DEFAULT_SUBJECT_FIELDS",
    "MANIFEST_SCHEMA",
    "DatasetReport",
    "LineProblem",
    "manifest_path",
    "prepare_dataset",
]

MANIFEST_SCHEMA = "aiguard.dataset-manifest/1"
DEFAULT_SUBJECT_FIELDS = ("subject", "customer_id")
#: Problems listed one by one in the manifest (all of them are counted).
MAX_LISTED_PROBLEMS = 1_000
_BATCH = 512
_CONSENT_CACHE = 65_536

SubjectAction = Literal["pseudonymize", "keep", "drop"]


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line of the input that was not copied, and why (never its content)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class DatasetReport:
    """What `prepare_dataset` did; ``manifest`` is the document written beside the output."""

    output: Path
    manifest_file: Path
    manifest: Mapping[str, Any]
    problems: tuple[LineProblem, ...] = ()

    @property
    def kept(self) -> int:
        return int(self.manifest["counts"]["kept"])

    @property
    def dropped(self) -> Mapping[str, int]:
        return cast("Mapping[str, int]", self.manifest["counts"]["dropped"])


def manifest_path(output: str | os.PathLike[str]) -> Path:
    """Where the manifest of ``output`` goes: ``<output>.manifest.json``."""
    out = Path(output)
    return out.with_name(out.name + ".manifest.json")


class _Deferred:
    """Stands in for the vault while a batch is protected: hands out placeholders and
    remembers what to tokenize, so the whole batch is tokenized in one transaction.

    A placeholder holds a per-run random nonce, so text in a record can never pass for
    one; it holds no value either.
    """

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(8)
        self.pattern = re.compile("\ue000" + self.nonce + r"(\d+)\ue001")
        self.requests: list[tuple[str, str, str | None]] = []

    def tokenize(self, scope: Scope, kind: str, value: str, subject: str | None = None) -> str:
        self.requests.append((kind, value, subject))
        return f"\ue000{self.nonce}{len(self.requests) - 1}\ue001"

    def detokenize(self, scope: Scope, token: str) -> str | None:
        return None


class _BatchGuard:
    """The guard as `Call` sees it, with the deferred vault in place of the real one."""

    def __init__(self, guard: GuardHost, vault: _Deferred) -> None:
        self._guard = guard
        self.vault = vault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._guard, name)


@dataclass
class _Tally:
    read: int = 0
    blank: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    subjects: int = 0
    problems: list[LineProblem] = field(default_factory=list)
    problem_count: int = 0

    def drop(self, line: int, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(LineProblem(line, detail))


def prepare_dataset(
    guard: GuardHost,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    destination: str,
    purpose: str = "model_training",
    tenant: str = "default",
    conversation: str | None = None,
    subject_fields: str | Sequence[str] = DEFAULT_SUBJECT_FIELDS,
    subject_action: SubjectAction = "pseudonymize",
    drop_fields: Sequence[str] = (),
    dataset: str | None = None,
    model: str | None = None,
    principal: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    batch_size: int = _BATCH,
) -> DatasetReport:
    """Filter ``source`` (JSON Lines) by consent, protect it by policy, write ``output``.

    ``subject_fields`` names the field holding each record's data subject (the first
    one present wins; dotted paths reach into objects). ``subject_action`` says what
    the output keeps of it: a keyed pseudonym (default; stable, so a later erasure can
    find the subject's records), the id itself, or nothing. ``drop_fields`` (dotted
    paths) are removed before protection. ``dataset`` / ``model`` name what the data
    feeds, for the training-use ledger. ``progress(bytes_read, total_bytes, records)``
    is called after each batch.

    Raises the policy's typed error when the destination may not receive data for the
    purpose (unknown, revoked, not approved, purpose not allowed), `ConsentRequired`
    when the consent store cannot be read and `VaultError` when tokens cannot be
    issued; then no output is left behind. Consent is taken as of the start of the run.
    """
    started = _now()
    fields = (subject_fields,) if isinstance(subject_fields, str) else tuple(subject_fields)
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise ValueError("subject_fields must name at least one field")
    if subject_action not in ("pseudonymize", "keep", "drop"):
        raise ValueError("subject_action must be 'pseudonymize', 'keep' or 'drop'")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not tenant:
        raise ValueError("tenant must be a non-empty string")
    source_path, out_path = Path(source), Path(output)
    if source_path.resolve() == out_path.resolve():
        raise ValueError("the output must not overwrite the input")
    request_id = "ds_" + secrets.token_hex(12)
    legal_basis = _check_run(guard, destination, purpose, tenant, principal, request_id)
    total = source_path.stat().st_size
    drops = [tuple(path.split(".")) for path in drop_fields]
    batch_vault = callable(getattr(guard.vault, "tokenize_many", None))
    scope = Scope(tenant, conversation)
    consent = _ConsentCheck(guard, purpose, destination, tenant, started)
    tally = _Tally()
    in_hash, out_hash = hashlib.sha256(), hashlib.sha256()
    out_bytes = 0
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")
    manifest_file = manifest_path(out_path)
    # line -> where its subject was, and the value as it was there
    fields_found: dict[int, tuple[tuple[str, ...], Any]] = {}

    def protect_batch(batch: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
        deferred = _Deferred() if batch_vault else None
        view = cast("GuardHost", _BatchGuard(guard, deferred)) if deferred is not None else guard
        lines: list[str] = []
        subjects: Counter[str] = Counter()
        for number, subject, record in batch:
            context = CallContext(
                subject=subject,
                tenant=tenant,
                purpose=purpose,
                conversation=conversation,
                principal=principal,
                use_for_training=True,
                destination=destination,
                dataset_version=dataset,
                model_version=model,
            )
            call = Call(view, context, destination, "dataset_prepare", model, request_id)
            mark = len(deferred.requests) if deferred is not None else 0
            try:
                protected = _protect_record(call, record)
            except PolicyDenied:
                if deferred is not None:
                    del deferred.requests[mark:]  # nothing of this record is tokenized
                kinds = sorted({f.kind for f in call.findings if f.action.value == "block"})
                tally.drop(number, "blocked_kind", f"holds a kind the policy blocks: {kinds}")
                continue
            tally.findings.update(f.kind for f in call.findings)
            tally.actions.update(f.action.value for f in call.findings)
            where, original = fields_found[number]
            if subject_action == "pseudonymize":
                _set_path(protected, where, guard.pseudonym("subject", subject))
            elif subject_action == "keep":
                _set_path(protected, where, original)
            lines.append(json.dumps(protected, ensure_ascii=False, separators=(",", ":")))
            subjects[subject] += 1
        if deferred is not None and deferred.requests:
            try:
                tokens = cast("Any", guard.vault).tokenize_many(scope, deferred.requests)
            except AIGuardError:
                raise
            except Exception as exc:
                raise VaultError(
                    f"the vault could not issue tokens ({type(exc).__name__}); no output was "
                    "written"
                ) from None
            if len(tokens) != len(deferred.requests):
                raise VaultError("the vault returned a token count that does not match")
            lines = [deferred.pattern.sub(lambda m: tokens[int(m.group(1))], x) for x in lines]
        if subjects:
            guard.dsr.record_training(
                dict(subjects),
                tenant=tenant,
                destination=destination,
                dataset=dataset,
                model=model,
                request_id=request_id,
            )
            tally.subjects += len(subjects)
        tally.kept += len(lines)
        return lines

    read_bytes = 0
    try:
        with open(source_path, "rb") as reader, open(partial, "wb") as writer:
            batch: list[tuple[int, str, dict[str, Any]]] = []
            for number, raw in enumerate(reader, start=1):
                in_hash.update(raw)
                read_bytes += len(raw)
                if not raw.strip():
                    tally.blank += 1
                    continue
                tally.read += 1
                parsed = _parse(raw)
                if isinstance(parsed, LineProblem):
                    tally.drop(number, "unparseable", parsed.reason)
                    continue
                if not isinstance(parsed, dict):
                    tally.drop(number, "not_an_object", "not a JSON object")
                    continue
                found = _subject_of(parsed, fields)
                if found is None:
                    tally.drop(number, "no_subject", f"no subject in {', '.join(fields)}")
                    continue
                where, subject = found
                verdict = consent.check(subject)
                if verdict is not None:
                    tally.drop(number, verdict, _CONSENT_DETAIL[verdict])
                    continue
                fields_found[number] = (where, _get_path(parsed, where))
                _remove_path(parsed, where)
                for path in drops:
                    _remove_path(parsed, path)
                batch.append((number, subject, parsed))
                if len(batch) >= batch_size:
                    out_bytes += _write(writer, out_hash, protect_batch(batch))
                    batch.clear()
                    fields_found.clear()
                    if progress is not None:
                        progress(read_bytes, total, tally.read)
            if batch:
                out_bytes += _write(writer, out_hash, protect_batch(batch))
            writer.flush()
            os.fsync(writer.fileno())
        if progress is not None:
            progress(read_bytes, total, tally.read)
        os.replace(partial, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    finished = _now()
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "request_id": request_id,
        "input": {
            "path": str(source_path),
            "sha256": in_hash.hexdigest(),
            "bytes": read_bytes,
            "records": tally.read,
            "blank_lines": tally.blank,
        },
        "output": {
            "path": str(out_path),
            "sha256": out_hash.hexdigest(),
            "bytes": out_bytes,
            "records": tally.kept,
        },
        "policy_digest": policy_digest(guard),
        "purpose": purpose,
        "legal_basis": legal_basis,
        "destination": destination,
        "tenant": tenant,
        "dataset": dataset,
        "model": model,
        "subject_fields": list(fields),
        "subject_action": subject_action,
        "drop_fields": list(drop_fields),
        "consent_as_of": _iso(started),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "counts": {
            "read": tally.read,
            "kept": tally.kept,
            "dropped": dict(sorted(tally.dropped.items())),
            "ledger_entries": tally.subjects,
        },
        "findings": dict(sorted(tally.findings.items())),
        "actions": dict(sorted(tally.actions.items())),
        "problems": [{"line": p.line, "reason": p.reason} for p in tally.problems],
        "problems_listed": len(tally.problems),
        "problems_total": tally.problem_count,
    }
    _write_json(manifest_file, manifest)
    guard.log.append(
        {
            "type": "protect",
            "request_id": request_id,
            "principal": principal,
            "tenant": tenant,
            "destination": destination,
            "purpose": purpose,
            "legal_basis": legal_basis,
            "consent": {"use_for_training": True},
            "decision": "allow",
            "reasons": [f"dataset prepare: kept {tally.kept} of {tally.read} records"],
            "findings": dict(tally.findings),
            "actions": dict(tally.actions),
            "input_digest": "sha256:" + in_hash.hexdigest(),
            "output_digest": "sha256:" + out_hash.hexdigest(),
            "dataset_version": dataset,
            "model_version": model,
            "gen_ai.operation.name": "dataset_prepare",
            "dataset": {"kept": tally.kept, "dropped": dict(tally.dropped)},
            "status": "ok",
        }
    )
    return DatasetReport(out_path, manifest_file, manifest, tuple(tally.problems))


def policy_digest(guard: GuardHost) -> str:
    """SHA-256 of the policy's canonical JSON: names the exact rules a dataset was made by."""
    document = guard.policy.model_dump(mode="json")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- the run-level decision ---------------------------------------------------------------


def _check_run(
    guard: GuardHost,
    destination: str,
    purpose: str,
    tenant: str,
    principal: str | None,
    request_id: str,
) -> str:
    """The checks of `decide` that do not depend on the subject, always enforced.

    A dataset is never prepared in monitor mode: filtering is its whole point.
    """
    policy = guard.policy
    error: AIGuardError | None = None
    spec = policy.purpose(purpose)
    target = policy.destinations.get(destination)
    if target is None:
        error = UnknownDestination(
            f"destination {destination!r} is not named by the policy; add it under "
            "[destinations] or prepare the dataset for an approved destination"
        )
    else:
        try:
            revoked = guard.killswitch.revoked(destination)
        except Exception as exc:  # fail closed, as decide does
            error = DestinationRevoked(
                f"the kill switch could not be read ({type(exc).__name__}); "
                f"no dataset is prepared for {destination!r}"
            )
        else:
            if revoked is not None:
                error = DestinationRevoked(
                    f"destination {destination!r} was revoked ({revoked.reason})"
                )
            elif not target.approved:
                error = PolicyDenied(f"destination {destination!r} is not approved")
            elif spec is None:
                error = PolicyDenied(f"unknown purpose {purpose!r}")
            elif purpose not in target.purposes:
                error = PolicyDenied(
                    f"destination {destination!r} is not approved for purpose {purpose!r}; "
                    f"it allows {', '.join(target.purposes) or 'no purpose'}"
                )
    if error is not None:
        guard.log.append(
            {
                "type": "refusal",
                "request_id": request_id,
                "principal": principal,
                "tenant": tenant,
                "destination": destination,
                "purpose": purpose,
                "decision": "deny",
                "reasons": [error.message],
                "gen_ai.operation.name": "dataset_prepare",
                "status": "denied",
                "error": error.code,
            }
        )
        raise error
    assert spec is not None
    return str(spec.legal_basis)


_CONSENT_DETAIL = {
    "no_consent": "the subject has no valid consent for the purpose",
    "consent_other_destination": "the subject's consent does not cover this destination",
}


class _ConsentCheck:
    """Consent per subject as of the start of the run, cached (bounded) for the run.

    A grant whose proof names ``destination`` (or ``destinations``, comma-separated)
    covers only those destinations; a grant without covers every destination the
    policy approves for the purpose.
    """

    def __init__(
        self, guard: GuardHost, purpose: str, destination: str, tenant: str, at: datetime
    ) -> None:
        self._store = guard.consent
        self._purpose = purpose
        self._destination = destination
        self._tenant = tenant
        self._at = at
        self._cache: dict[str, str | None] = {}

    def check(self, subject: str) -> str | None:
        """None when the subject's record may be kept, else the reason to drop it."""
        if subject in self._cache:
            return self._cache[subject]
        try:
            record = self._store.current(subject, self._purpose, tenant=self._tenant, at=self._at)
        except Exception as exc:  # fail closed: an unreadable store is not a yes
            raise ConsentRequired(
                f"the consent store could not be read ({type(exc).__name__}); "
                "no dataset was written"
            ) from None
        verdict = self._verdict(record)
        if len(self._cache) >= _CONSENT_CACHE:
            self._cache.clear()
        self._cache[subject] = verdict
        return verdict

    def _verdict(self, record: ConsentRecord | None) -> str | None:
        if record is None:
            return "no_consent"
        named = record.proof.get("destination") or record.proof.get("destinations")
        if named is not None:
            allowed = {part.strip() for part in named.split(",")}
            if self._destination not in allowed:
                return "consent_other_destination"
        return None


# -- records ------------------------------------------------------------------------------


def _parse(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineProblem(0, f"not UTF-8 (byte {exc.start + 1})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The message names the position only; never the text around it.
        return LineProblem(0, f"invalid JSON (column {exc.colno})")
    except RecursionError:
        return LineProblem(0, "JSON nested too deeply")


def _subject_of(
    record: dict[str, Any], fields: Sequence[str]
) -> tuple[tuple[str, ...], str] | None:
    for name in fields:
        path = tuple(name.split("."))
        value = _get_path(record, path)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return path, str(value)
        if isinstance(value, str) and value.strip():
            return path, value
    return None


def _get_path(node: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _remove_path(node: Any, path: Sequence[str]) -> None:
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _set_path(node: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _protect_record(call: Call, node: Any, path: str = "$") -> Any:
    """Every string of a record is data (no structural keys here), keys included, with
    key context (`Call.protect_tree`), and so are integers long enough to be a card or
    phone number."""
    return call.protect_tree(node, path)


# -- output -------------------------------------------------------------------------------


def _write(writer: Any, digest: Any, lines: list[str]) -> int:
    if not lines:
        return 0
    data = ("\n".join(lines) + "\n").encode("utf-8")
    writer.write(data)
    digest.update(data)
    return len(data)


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(temporary, path)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
