"""What the guard adds to one call: protect + restore + one chained event.

Run: python benchmarks/bench_call.py [--json]
Prints microseconds per operation (median of repeated batches) for
  - detection alone on a typical support message,
  - Guard.protect on the message (decision, detection, tokenization, event),
  - a full OpenAI-SDK chat call through the guard's transport against the fake model,
    minus the same SDK call straight to the fake (the guard's added cost),
  - Guard.protect again, each one timed right after a plain SDK call: inside a call the
    guard's code and data are no longer in the CPU's caches, as they are in a tight
    loop, and this is what the same work costs there.
With ``--json`` the table goes to stderr and stdout gets the figures as one JSON object
(what benchmarks/run_all.py reads).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from _report import report

import aiguard
from aiguard.testing import FakeModel, InMemorySink
from aiguard.vault.memory import InMemoryVault, VaultKeys

MESSAGE = (
    "Hi, this is Maria Keller. My account ACC-20417783 was charged twice on card "
    "4111 1111 1111 1111. Please reply to maria.keller@example.com or call +49 30 901820 17. "
    "I have been a customer for years and would appreciate a quick answer, thanks!"
)


def per_op_us(fn: Callable[[], object], batch: int, rounds: int = 7) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / batch / 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    return report(measure, args.json)


def setup() -> tuple[aiguard.Guard, aiguard.CallContext]:
    """The guard and call context every figure is measured with (bench_instructions too)."""
    policy = aiguard.policy.parse_policy(
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\n[[patterns]]\nkind = "account"\nlevel = "sensitive"\n'
        'regex = "ACC-[0-9]{8}"\n'
    )
    # Keys from a fixed secret, so every process issues the same tokens: with random keys
    # each process's tokens, and so the text the answer's scan reads, differ, and with them
    # the per-call cost bench_instructions.py derives from two processes (by up to 3 %).
    vault = InMemoryVault(VaultKeys.derive(b"aiguard benchmark vault secret, fixed"))
    guard = aiguard.Guard(policy, sinks=[InMemorySink()], vault=vault)
    ctx = aiguard.CallContext(
        subject="cust-1", tenant="acme", purpose="inference", destination="openai"
    )
    return guard, ctx


def measure() -> dict[str, float]:
    """Run the benchmark, print its table and return the figures (µs per operation)."""
    guard, ctx = setup()
    rows = [
        ("detect(message), 250 chars", per_op_us(lambda: guard.detect(MESSAGE), 2000)),
        (
            "guard.protect(message) incl. event",
            per_op_us(lambda: guard.protect(MESSAGE, ctx), 1000),
        ),
    ]
    try:
        import openai
    except ImportError:
        openai = None
    if openai is not None:
        fake = FakeModel()
        guarded = openai.OpenAI(
            http_client=guard.http_client(transport=fake.transport),
            base_url="https://api.openai.com/v1",
            api_key="k",
            max_retries=0,
        )
        plain = openai.OpenAI(
            http_client=type(guard.http_client(transport=fake.transport))(transport=fake.transport),
            base_url="https://api.openai.com/v1",
            api_key="k",
            max_retries=0,
        )
        messages = [{"role": "user", "content": MESSAGE}]

        def guarded_call() -> object:
            with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
                return guarded.chat.completions.create(model="gpt-4o", messages=messages)

        def plain_call() -> object:
            return plain.chat.completions.create(model="gpt-4o", messages=messages)

        # Interleave the two so that load on a shared machine hits both alike.
        guarded_samples, plain_samples = [], []
        for _ in range(9):
            guarded_samples.append(per_op_us(guarded_call, 60, rounds=1))
            plain_samples.append(per_op_us(plain_call, 60, rounds=1))
        g = statistics.median(guarded_samples)
        p = statistics.median(plain_samples)
        added = statistics.median(
            a - b for a, b in zip(guarded_samples, plain_samples, strict=True)
        )
        rows += [
            ("SDK call through guard (fake model)", g),
            ("SDK call without guard (fake model)", p),
            ("=> added by the guard per call", added),
            ("guard.protect right after an SDK call", protect_after(plain_call)),
        ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation'.ljust(width)}  µs/op")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value:8.1f}")
    keys = (
        "detect_us",
        "protect_us",
        "sdk_guarded_us",
        "sdk_plain_us",
        "added_us",
        "protect_after_sdk_us",
    )
    return dict(zip(keys, (value for _, value in rows), strict=False))


def protect_after(between: Callable[[], object], count: int = 400) -> float:
    """Median µs of one ``guard.protect`` timed right after ``between`` (a plain SDK call).

    A fresh guard, so that its log and vault hold no more than the loop adds.
    """
    guard, ctx = setup()
    samples = []
    for _ in range(count):
        between()
        start = time.perf_counter_ns()
        guard.protect(MESSAGE, ctx)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


if __name__ == "__main__":
    sys.exit(main())
