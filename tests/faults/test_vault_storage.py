"""Fault matrix, vault storage: a row changed on disk (a corrupted or swapped ciphertext).

The authenticated cipher refuses it: restoring fails with a typed `VaultError` that
names no value, the attempt that reached the model is still recorded, and values whose
rows are intact keep restoring.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from faultkit import DoorCall, call_events

import aiguard
from aiguard.testing import FakeModel, assert_chain_valid, assert_no_raw_values

POLICY = """
database = "aiguard.db"
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference"]
"""

EMAIL = "stored.person@example.com"
OTHER = "intact.person@example.com"


def _guard(tmp_path: Path) -> aiguard.Guard:
    (tmp_path / "aiguard.toml").write_text(POLICY)
    sink = aiguard.InMemorySink()
    return aiguard.Guard.from_toml(tmp_path / "aiguard.toml", sinks=[sink])


def _token_of(fake: FakeModel) -> str:
    content = fake.requests[-1].json["messages"][0]["content"]
    return str(content.split()[-1])


@pytest.mark.parametrize("damage", ["flip-a-bit", "swap-rows"])
def test_a_damaged_vault_row_never_restores_and_is_reported(
    door: str, damage: str, tmp_path: Path, leak_values: Any
) -> None:
    leak_values([EMAIL, OTHER])
    guard = _guard(tmp_path)
    first, second = FakeModel(), FakeModel()
    DoorCall(door, guard, transport=first.transport)(f"mail {EMAIL}")
    DoorCall(door, guard, transport=second.transport)(f"mail {OTHER}")
    token, other = _token_of(first), _token_of(second)
    with sqlite3.connect(tmp_path / "aiguard.db") as conn:
        rows = conn.execute(
            "SELECT token, ciphertext FROM aiguard_vault_entry WHERE token IN (?, ?)",
            (token, other),
        ).fetchall()
        by_token = {row[0]: bytes(row[1]) for row in rows}
        if damage == "flip-a-bit":
            broken = bytearray(by_token[token])
            broken[0] ^= 0x01
            new = bytes(broken)
        else:  # the intact ciphertext of another entry, moved under this token
            new = by_token[other]
        conn.execute("UPDATE aiguard_vault_entry SET ciphertext = ? WHERE token = ?", (new, token))
    guard.vault._token_cache.clear()  # type: ignore[attr-defined]
    restore_cache = getattr(guard.vault, "_restore_cache", None)
    if restore_cache is not None:
        restore_cache.clear()
    answering = FakeModel(f"We wrote to {token}.")
    before = len(call_events(guard.sinks[0]))  # type: ignore[arg-type]
    with pytest.raises(aiguard.VaultError) as caught:
        DoorCall(door, guard, transport=answering.transport)("where did you write?")
    assert EMAIL not in str(caught.value) and OTHER not in str(caught.value)
    # The attempt reached the model, so it is in the chain.
    assert len(call_events(guard.sinks[0])) == before + 1  # type: ignore[arg-type]
    intact = FakeModel(f"We wrote to {other}.")
    assert DoorCall(door, guard, transport=intact.transport)("and the other?") == (
        f"We wrote to {OTHER}."
    )
    assert_no_raw_values(answering, [EMAIL, OTHER])
    assert_chain_valid(guard.sinks[0])  # type: ignore[arg-type]
    guard.close()
