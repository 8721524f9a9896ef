"""Signed checkpoints, the background writer, sink health, crash recovery."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.errors import ProvenanceError
from aiguard.provenance import InMemorySink, JsonlSink, ProvenanceLog, verify_file, verify_lines
from aiguard.provenance.canonical import CanonicalError
from aiguard.provenance.checkpoint import Signer
from aiguard.provenance.verify import VerifyOptions, verify_records


def signed_log(path: Path, count: int, *, every: int = 4, name: str = "signed") -> Signer:
    signer = Signer.generate("test-signer")
    log = ProvenanceLog(
        name,
        [JsonlSink(path)],
        signer=signer,
        checkpoint_every=every,
        checkpoint_file=path.with_suffix(".checkpoint"),
    )
    for i in range(count):
        log.append({"type": "call", "request_id": f"r{i}"})
    log.close()
    return signer


class TestCheckpoints:
    def test_signed_log_verifies_against_trusted_key(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        signer = signed_log(path, 10)
        report = verify_file(path, VerifyOptions(public_key=signer.verifier))
        assert report.ok, report.summary()
        assert report.attestation == "trusted key"
        # genesis + 10 calls + checkpoints after 4 and 8 calls (+ genesis) and on close
        assert report.checkpoints == 3
        types = [json.loads(line)["type"] for line in path.read_text().splitlines()]
        assert types[-1] == "checkpoint"

    def test_without_a_key_it_is_self_attested(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        signed_log(path, 5)
        report = verify_file(path)
        assert report.ok and report.attestation == "self-attested"
        assert "self-attested" in report.summary()

    def test_another_key_fails(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        signed_log(path, 5)
        other = Signer.generate("test-signer").verifier
        report = verify_file(path, VerifyOptions(public_key=other))
        assert not report.ok
        assert report.failure is not None and "signature is not valid" in report.failure.reason

    def test_rewritten_log_with_attackers_key_fails_against_trusted_key(
        self, tmp_path: Path
    ) -> None:
        real = tmp_path / "real.jsonl"
        signer = signed_log(real, 5)
        forged = tmp_path / "forged.jsonl"
        signed_log(forged, 5)  # a consistent log signed by someone else's key
        assert verify_file(forged).ok  # self-consistent...
        assert not verify_file(forged, VerifyOptions(public_key=signer.verifier)).ok

    def test_cut_tail_of_a_signed_log_is_caught(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        signed_log(path, 10)
        lines = path.read_bytes().splitlines(keepends=True)
        report = verify_lines(lines[:-1])
        assert not report.ok
        assert (
            report.failure is not None
            and "not covered by a signed checkpoint" in report.failure.reason
        )
        assert verify_lines(lines[:-1], VerifyOptions(allow_unsealed=True)).ok

    def test_cut_back_to_an_earlier_checkpoint_is_caught_by_the_published_one(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "p.jsonl"
        signed_log(path, 10)
        published = path.with_suffix(".checkpoint").read_text()
        lines = path.read_bytes().splitlines(keepends=True)
        cut = max(i for i, line in enumerate(lines[:-1]) if b'"type":"checkpoint"' in line)
        shorter = lines[: cut + 1]
        assert verify_lines(shorter).ok  # on its own it looks complete
        report = verify_lines(shorter, VerifyOptions(checkpoint=published))
        assert not report.ok
        assert report.failure is not None and "removed from the end" in report.failure.reason
        assert verify_lines(lines, VerifyOptions(checkpoint=published)).ok

    def test_resumed_signed_log_keeps_one_merkle_tree(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        signer = Signer.generate("s")
        for round_ in range(3):
            log = ProvenanceLog("resumed", [JsonlSink(path)], signer=signer, checkpoint_every=3)
            for i in range(4):
                log.append({"type": "call", "request_id": f"{round_}-{i}"})
            log.close()
        report = verify_file(path, VerifyOptions(public_key=signer.verifier))
        assert report.ok, report.summary()
        assert report.records == 1 + 12 + report.checkpoints

    @settings(
        max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.data())
    def test_any_tampering_of_a_signed_log_is_caught(self, data: st.DataObject) -> None:
        lines = _SIGNED
        n = len(lines)
        op = data.draw(st.sampled_from(["edit", "delete", "insert", "swap", "truncate"]))
        tampered = list(lines)
        if op == "truncate":
            keep = data.draw(st.integers(min_value=1, max_value=n - 1))
            tampered = tampered[:keep]
        else:
            i = data.draw(st.integers(min_value=0, max_value=n - 2))
            if op == "edit":
                line = bytearray(tampered[i])
                pos = data.draw(st.integers(min_value=0, max_value=len(line) - 2))
                line[pos] = (line[pos] + 1 - 32) % 95 + 32
                tampered[i] = bytes(line)
            elif op == "delete":
                del tampered[i]
            elif op == "insert":
                tampered.insert(i, lines[data.draw(st.integers(min_value=0, max_value=n - 1))])
            else:
                tampered[i], tampered[i + 1] = tampered[i + 1], tampered[i]
        options = VerifyOptions(public_key=_SIGNER[0].verifier, checkpoint=_PUBLISHED[0])
        assert not verify_lines(tampered, options).ok


_SIGNED: list[bytes] = []
_SIGNER: list[Signer] = []
_PUBLISHED: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _signed_sample(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("signed") / "p.jsonl"
    _SIGNER[:] = [signed_log(path, 12, every=3)]
    _SIGNED[:] = path.read_bytes().splitlines(keepends=True)
    _PUBLISHED[:] = [path.with_suffix(".checkpoint").read_text()]


class TestBackgroundWriter:
    def test_threads_and_tasks_append_without_gaps(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        log = ProvenanceLog("bg", [JsonlSink(path)], background=True, queue_size=64)

        def worker(t: int) -> None:
            for i in range(250):
                log.append({"type": "call", "request_id": f"t{t}-{i}"})

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()

        async def task(k: int) -> None:
            for i in range(5):
                log.append({"type": "call", "request_id": f"a{k}-{i}"})
                await asyncio.sleep(0)

        async def many() -> None:
            await asyncio.gather(*(task(k) for k in range(200)))

        asyncio.run(many())
        for thread in threads:
            thread.join()
        log.close()
        report = verify_file(path)
        assert report.ok and report.records == 1 + 8 * 250 + 200 * 5
        ids = [json.loads(line).get("request_id") for line in path.read_text().splitlines()[1:]]
        assert len(set(ids)) == len(ids)

    def test_receipt_waits_until_written(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        log = ProvenanceLog("bg", [JsonlSink(path, fsync="always")], background=True)
        record = log.append({"type": "call", "request_id": "x"}).wait(5)
        assert record.document["request_id"] == "x"
        assert record.line in path.read_bytes()
        log.close()

    def test_a_document_outside_the_domain_is_refused_at_the_call(self, tmp_path: Path) -> None:
        # Checked by `append` itself: the writer thread never meets it, and the log goes on.
        path = tmp_path / "p.jsonl"
        log = ProvenanceLog("bg", [JsonlSink(path)], background=True)
        with pytest.raises(CanonicalError, match="floats"):
            log.append({"type": "call", "score": 0.5})
        log.append({"type": "call", "request_id": "after"}).wait(5)
        log.close()
        assert log.healthy
        assert verify_file(path).records == 2

    def test_the_writer_is_woken_for_an_event_after_it_went_idle(self, tmp_path: Path) -> None:
        # Appends skip the lock; a writer that just went to sleep must still see them at
        # once, not after its retry interval.
        log = ProvenanceLog("bg", [InMemorySink()], background=True, retry_interval=30)
        for i in range(200):
            time.sleep(0.0005 * (i % 3))
            log.append({"type": "call", "request_id": str(i)}).wait(5)
        log.close()

    def test_full_queue_can_fail_closed(self) -> None:
        gate = threading.Event()

        class Slow(InMemorySink):
            def emit_batch(self, records: Any) -> None:
                gate.wait(5)
                super().emit_batch(records)

        log = ProvenanceLog(
            "bg", [Slow()], background=True, queue_size=2, when_full="fail", batch_size=1
        )
        with pytest.raises(ProvenanceError, match=r"queue .* is full"):
            for i in range(50):
                log.append({"type": "call", "request_id": str(i)})
        gate.set()
        log.close()

    def test_close_flushes_at_exit_of_a_process(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        code = (
            "import sys; from aiguard.provenance import ProvenanceLog, JsonlSink\n"
            f"log = ProvenanceLog('exit', [JsonlSink({str(path)!r})], background=True)\n"
            "[log.append({'type': 'call', 'request_id': str(i)}) for i in range(500)]\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        report = verify_file(path)
        assert report.ok and report.records == 501


class TestSinkHealth:
    def test_failed_required_sink_refuses_calls_then_catches_up(
        self, policy: aiguard.Policy
    ) -> None:
        from aiguard.testing import FakeModel

        class Flaky(InMemorySink):
            down = False

            def emit_batch(self, records: Any) -> None:
                if self.down:
                    raise OSError("collector down")
                super().emit_batch(records)

        flaky, backup = Flaky(), InMemorySink(required=False)
        guard = aiguard.Guard(policy, sinks=[flaky, backup])
        fake = FakeModel()
        client = guard.http_client(transport=fake.transport)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        url = "https://api.openai.com/v1/chat/completions"
        with guard.context(subject="s", purpose="inference"):
            client.post(url, json=body)
            flaky.down = True
            with pytest.raises(ProvenanceError):
                client.post(url, json=body)  # the event of this call could not be written
            assert len(fake.requests) == 2
            with pytest.raises(ProvenanceError, match="undelivered"):
                client.post(url, json=body)  # refused before sending
            assert len(fake.requests) == 2
            flaky.down = False
            client.post(url, json=body)
        assert len(fake.requests) == 3
        assert [r.document["seq"] for r in flaky.records] == list(range(len(flaky.records)))
        assert verify_records(flaky.records).ok
        assert [r.line for r in flaky.records] == [r.line for r in backup.records]

    def test_best_effort_sink_failure_is_not_raised(self) -> None:
        class Broken(InMemorySink):
            def emit_batch(self, records: Any) -> None:
                raise OSError("nope")

        good = InMemorySink()
        log = ProvenanceLog("be", [good, Broken(required=False)])
        log.append({"type": "call"})
        assert log.healthy
        assert verify_records(good.records).ok


class TestCrashRecovery:
    def test_torn_last_record_is_quarantined_and_recorded(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        log = ProvenanceLog("torn", [JsonlSink(path)])
        for i in range(3):
            log.append({"type": "call", "request_id": str(i)})
        log.close()
        data = path.read_bytes()
        path.write_bytes(data[:-25])  # the writer died mid-record
        assert not verify_file(path).ok
        log = ProvenanceLog("torn", [JsonlSink(path)])
        log.append({"type": "call", "request_id": "after"})
        log.close()
        report = verify_file(path)
        assert report.ok, report.summary()
        events = [json.loads(line) for line in path.read_text().splitlines()]
        recovery = [e for e in events if e["type"] == "recovery"]
        assert len(recovery) == 1 and recovery[0]["recovery"]["torn_bytes"] > 0
        assert (tmp_path / "p.jsonl.torn").exists()

    def test_damage_before_the_end_is_not_repaired(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        log = ProvenanceLog("dmg", [JsonlSink(path)])
        log.append({"type": "call"})
        log.close()
        lines = path.read_bytes().splitlines(keepends=True)
        lines[-1] = lines[-1].replace(b'"call"', b'"cell"')
        path.write_bytes(b"".join(lines))
        with pytest.raises(ProvenanceError, match="does not match its digest"):
            ProvenanceLog("dmg", [JsonlSink(path)])

    def test_one_writer_process_per_file(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        sink = JsonlSink(path)
        code = f"from aiguard.provenance import JsonlSink\nJsonlSink({str(path)!r})\n"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode != 0
        assert "another process" in result.stderr
        sink.close()

    @pytest.mark.slow
    def test_sigkill_never_loses_an_acknowledged_event(self, tmp_path: Path) -> None:
        # One helper imports aiguard once and forks each writer, so the 50 kills cost a
        # fork each rather than an interpreter start and an import (most of the time).
        helper = (
            "import os, random, signal, sys, time\n"
            "from aiguard.provenance import ProvenanceLog, JsonlSink\n"
            "path, runs = sys.argv[1], int(sys.argv[2])\n"
            "rng = random.Random(7)\n"
            "for run in range(runs):\n"
            "    r, w = os.pipe()\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        try:\n"
            "            os.close(r)\n"
            "            sink = JsonlSink(path, fsync='always')\n"
            "            log = ProvenanceLog('kill', [sink], background=True)\n"
            "            i = 0\n"
            "            while True:\n"
            "                doc = {'type': 'call', 'request_id': f'{run}-{i}'}\n"
            "                rec = log.append(doc).wait(10)\n"
            "                os.write(w, (rec.document['request_id'] + '\\n').encode())\n"
            "                i += 1\n"
            "        finally:\n"
            "            os._exit(1)\n"
            "    os.close(w)\n"
            "    reader = os.fdopen(r)\n"
            "    first = reader.readline()  # the writer is up: one durable record\n"
            "    time.sleep(rng.random() * 0.2)  # then killed at a random moment\n"
            "    os.kill(pid, signal.SIGKILL)\n"
            "    os.waitpid(pid, 0)\n"
            "    rest = reader.read()\n"
            "    reader.close()\n"
            "    print('ACK', *(first + rest).split(), flush=True)\n"
            "    sys.stdin.readline()  # the test has verified the file\n"
        )
        path = tmp_path / "p.jsonl"
        runs = 50
        acknowledged: list[str] = []
        proc = subprocess.Popen(
            [sys.executable, "-c", helper, str(path), str(runs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for _ in range(runs):
                line = proc.stdout.readline().split()
                assert line[:1] == ["ACK"] and len(line) >= 2, line
                acknowledged += line[1:]
                report = verify_file(path)
                # Killed mid-write at most tears the last line; the next writer repairs it.
                assert report.ok or (
                    report.failure is not None and "torn last line" in report.failure.reason
                )
                proc.stdin.write("\n")
                proc.stdin.flush()
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ProvenanceLog("kill", [JsonlSink(path)]).close()
        report = verify_file(path)
        assert report.ok, report.summary()
        written = {json.loads(line).get("request_id") for line in path.read_text().splitlines()}
        assert len(acknowledged) >= runs and set(acknowledged) <= written


class TestRotation:
    def write(self, path: Path, count: int, signer: Signer) -> None:
        log = ProvenanceLog(
            "rotating", [JsonlSink(path, max_bytes=4096)], signer=signer, checkpoint_every=7
        )
        for i in range(count):
            log.append({"type": "call", "request_id": f"r{i}", "reasons": ["x" * 40]})
        log.close()

    def test_segments_verify_as_one_chain_across_restarts(self, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        signer = Signer.generate("rot")
        self.write(path, 60, signer)
        self.write(path, 60, signer)
        segments = sorted(tmp_path.glob("events.*.jsonl"))
        assert len(segments) >= 3
        assert all(p.stat().st_size < 4096 + 2048 for p in segments)
        report = verify_file(path, VerifyOptions(public_key=signer.verifier))
        assert report.ok, report.summary()
        assert report.records == sum(len(p.read_bytes().splitlines()) for p in [*segments, path])

    def test_a_missing_or_edited_segment_is_caught(self, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        signer = Signer.generate("rot")
        self.write(path, 80, signer)
        segments = sorted(tmp_path.glob("events.*.jsonl"))
        middle = segments[1]
        data = middle.read_bytes()
        middle.write_bytes(data.replace(b'"r', b'"R', 1))
        assert not verify_file(path).ok
        middle.unlink()
        report = verify_file(path)
        assert not report.ok
        assert report.failure is not None and "missing" in report.failure.reason


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://my-resource.openai.azure.com/openai", "azure.ai.openai"),
        ("https://api.anthropic.com", "anthropic"),
        ("http://127.0.0.1:8000/v1", "inhouse"),  # a host aiguard does not know: the name
    ],
)
def test_each_event_names_the_destinations_provider(base_url: str, provider: str) -> None:
    policy = aiguard.policy.parse_policy(
        f'[destinations.inhouse]\nbase_url = "{base_url}"\napproved = true\n'
        'purposes = ["inference"]\n'
    )
    sink = InMemorySink()
    guard = aiguard.Guard(policy, sinks=[sink])
    guard.protect("hello", aiguard.CallContext(purpose="inference", destination="inhouse"))
    (event,) = sink.calls()
    assert event["gen_ai.provider.name"] == provider
