"""The hash chain, its canonical encoding, and `aiguard verify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.provenance import JsonlSink, ProvenanceLog, verify_file, verify_lines
from aiguard.provenance.canonical import (
    CanonicalError,
    _standard_bytes,
    _trusted_bytes,
    canonical_bytes,
)

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.text()
)
json_docs = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=20,
)


class TestCanonical:
    @settings(max_examples=400, deadline=None)
    @given(json_docs)
    def test_fast_path_equals_rfc8785(self, document: object) -> None:
        expected = rfc8785.dumps(document)
        assert canonical_bytes(document) == expected
        # Both writers of the fast path: orjson (installed with the dev extra) and the
        # standard library, which the first falls back to and which runs without it.
        assert _trusted_bytes(document) == expected
        assert _standard_bytes(document) == expected

    def test_orjson_writes_the_canonical_bytes_when_installed(self) -> None:
        orjson = pytest.importorskip("orjson")
        document = {"b": [1, True, None], "a": {"z": '\u00e9\x1f"', "y": 2**53 - 1}}
        expected = rfc8785.dumps(document)
        assert orjson.dumps(document, option=orjson.OPT_SORT_KEYS) == expected
        assert _trusted_bytes(document) == expected

    @pytest.mark.parametrize(
        "bad", ["\ud800", {"k": 2**64}, {1: "x"}], ids=["surrogate", "beyond-64-bits", "int-key"]
    )
    def test_what_orjson_refuses_the_standard_library_writes_or_refuses_alike(
        self, bad: object
    ) -> None:
        try:
            expected: bytes | type[Exception] = _standard_bytes(bad)
        except Exception as exc:
            expected = type(exc)
        if isinstance(expected, bytes):
            assert _trusted_bytes(bad) == expected
        else:
            with pytest.raises(expected):
                _trusted_bytes(bad)

    @pytest.mark.parametrize("bad", [1.5, {"k": float("nan")}, 2**53, {"é": 1}, b"x"])
    def test_values_outside_the_domain_are_refused(self, bad: object) -> None:
        with pytest.raises(CanonicalError):
            canonical_bytes(bad)

    def test_shared_parts_encode_and_cycles_are_refused(self) -> None:
        shared = [1, "x"]
        assert canonical_bytes({"a": shared, "b": shared}) == b'{"a":[1,"x"],"b":[1,"x"]}'
        loop: list[object] = []
        loop.append(loop)
        with pytest.raises(CanonicalError, match="circular"):
            canonical_bytes({"x": loop})


def write_log(path: Path, count: int = 8) -> list[bytes]:
    log = ProvenanceLog("test-log", [JsonlSink(path)])
    for i in range(count):
        log.append({"type": "call", "request_id": f"r{i}", "findings": {"email": i}})
    log.close()
    return path.read_bytes().splitlines(keepends=True)


class TestVerify:
    def test_a_fresh_log_verifies(self, tmp_path: Path) -> None:
        lines = write_log(tmp_path / "p.jsonl")
        report = verify_lines(lines)
        assert report.ok and report.records == 9 and report.head_seq == 8

    def test_reopened_log_continues_its_chain(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        write_log(path, 3)
        write_log(path, 3)
        report = verify_file(path)
        assert report.ok and report.records == 7

    def test_other_log_name_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        write_log(path, 1)
        with pytest.raises(aiguard.ProvenanceError, match="already holds log"):
            ProvenanceLog("another", [JsonlSink(path)])

    def test_torn_last_line(self, tmp_path: Path) -> None:
        lines = write_log(tmp_path / "p.jsonl", 3)
        torn = [*lines[:-1], lines[-1][:20]]
        report = verify_lines(torn)
        assert not report.ok
        assert report.failure is not None
        assert report.failure.line == 4
        assert "torn last line" in report.failure.reason

    @settings(max_examples=120, deadline=None)
    @given(st.data())
    def test_any_change_before_the_end_is_caught(self, data: st.DataObject) -> None:
        lines = _LINES
        n = len(lines)
        op = data.draw(st.sampled_from(["edit", "delete", "insert", "swap", "field"]))
        i = data.draw(st.integers(min_value=0, max_value=n - 2))
        tampered = list(lines)
        if op == "edit":
            line = bytearray(tampered[i])
            pos = data.draw(st.integers(min_value=0, max_value=len(line) - 2))
            new = data.draw(st.integers(min_value=32, max_value=126))
            if line[pos] == new:
                new = new + 1 if new < 126 else 32
            line[pos] = new
            tampered[i] = bytes(line)
        elif op == "delete":
            del tampered[i]
        elif op == "insert":
            j = data.draw(st.integers(min_value=0, max_value=n - 1))
            tampered.insert(i, lines[j])
        elif op == "swap":
            tampered[i], tampered[i + 1] = tampered[i + 1], tampered[i]
        else:  # a careful attacker re-computes the digest of the edited record
            from aiguard.provenance.chain import seal_document

            doc = json.loads(tampered[i])
            doc["request_id"] = "forged"
            tampered[i] = seal_document(doc, doc["seq"], doc["prev"]).line + b"\n"
        report = verify_lines(tampered)
        assert not report.ok
        assert report.failure is not None
        assert report.failure.line <= i + 2


_LINES: list[bytes] = []


@pytest.fixture(autouse=True, scope="module")
def _sample_log(tmp_path_factory: pytest.TempPathFactory) -> None:
    _LINES[:] = write_log(tmp_path_factory.mktemp("log") / "p.jsonl", 10)


class TestEventIds:
    def test_uuid7_layout_order_and_uniqueness(self) -> None:
        import time
        import uuid

        from aiguard.provenance.chain import uuid7

        first = uuid7()
        time.sleep(0.002)
        ids = [uuid7() for _ in range(5000)]
        assert len(set(ids)) == len(ids)
        parsed = uuid.UUID(first)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert all(uuid.UUID(i).version == 7 for i in ids[:50])
        # Milliseconds lead: a later id sorts after an earlier one.
        assert first < ids[0] and ids[0][:13] <= ids[-1][:13]
        assert (parsed.int >> 80) == pytest.approx(time.time() * 1000, abs=5000)

    def test_request_ids_are_uuid7_hex_after_req(self) -> None:
        import time
        import uuid

        from aiguard.provenance.chain import new_request_id

        first = new_request_id()
        time.sleep(0.002)
        ids = [new_request_id() for _ in range(2000)]
        assert len(set(ids)) == len(ids)
        for request_id in (first, *ids[:50]):
            assert request_id.startswith("req_") and len(request_id) == 36
            parsed = uuid.UUID(hex=request_id[4:])
            assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert first < ids[0]
        assert (uuid.UUID(hex=first[4:]).int >> 80) == pytest.approx(time.time() * 1000, abs=5000)

    def test_a_forked_child_draws_its_own_randomness(self) -> None:
        import os
        import subprocess
        import sys

        if not hasattr(os, "fork"):
            pytest.skip("needs os.fork")
        # In a fresh single-threaded interpreter: forking the test process (which runs
        # threads) is itself unsafe.
        script = (
            "import os\n"
            "from aiguard.provenance.chain import uuid7\n"
            "uuid7()\n"  # the parent now holds a block of random digits
            "read, write = os.pipe()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.write(write, ','.join(uuid7()[15:] for _ in range(20)).encode())\n"
            "    os._exit(0)\n"
            "os.close(write)\n"
            "os.waitpid(pid, 0)\n"
            "child = set(os.read(read, 1 << 16).decode().split(','))\n"
            "parent = {uuid7()[15:] for _ in range(20)}\n"
            "print(len(child), len(child & parent))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["20", "0"]


any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=2),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=10,
)


class TestAppendChecksTheDomain:
    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.text(max_size=4), any_values, max_size=6))
    # A field named like one the log writes itself, left empty: the log's own value stays.
    @example({"prev": None})
    @example({"seq": None, "digest": None})
    def test_append_refuses_exactly_what_the_canonical_encoder_refuses(
        self, fields: dict[str, object]
    ) -> None:
        kept = {k: v for k, v in fields.items() if v is not None and v != {} and k != "digest"}
        try:
            canonical_bytes(kept)
        except CanonicalError:
            refused = True
        else:
            refused = False
        log = ProvenanceLog("domain", [])
        if refused:
            with pytest.raises(CanonicalError):
                log.append(fields)
        else:
            record = log.append(fields).wait(5)
            header = {"schema", "log", "event_id", "time", "seq", "prev"}  # the log's own
            for key, value in kept.items():
                assert key in header or record.document[key] == value
            dropped = {k for k, v in fields.items() if v is None} - header - {"digest"}
            assert not set(record.document) & dropped
