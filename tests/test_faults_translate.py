"""The fault translation every store and sink uses: DSNs are masked, messages name the
target, the operation, what to fix and the policy key, and the cause is kept only when
it cannot quote a value."""

from __future__ import annotations

import errno
import sqlite3
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aiguard
from aiguard.storage._faults import hint, mask_dsn, store_fault, translating

SECRET = st.text(alphabet=string.ascii_letters + string.digits + "!$%^*()-_+=~", min_size=4)


@given(user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), password=SECRET)
def test_a_url_password_never_survives(user: str, password: str) -> None:
    dsn = f"postgresql://{user}:{password}@db.internal:5432/app?sslmode=require"
    # Exactly the password is masked: looking for it in the output misfires when it is
    # part of the rest ("mode" in "sslmode=require").
    assert mask_dsn(dsn) == f"postgresql://{user}:***@db.internal:5432/app?sslmode=require"


@given(password=SECRET)
def test_a_query_or_keyword_password_never_survives(password: str) -> None:
    # Exactly the value is masked, and nothing else changes. (Looking for the password
    # in the output misfires when it is part of the rest: "requ" in "sslmode=require".)
    for dsn, expected in (
        (
            f"postgresql://app@db/app?password={password}&sslmode=require",
            "postgresql://app@db/app?password=***&sslmode=require",
        ),
        (
            f"host=db user=app password={password} dbname=app",
            "host=db user=app password=*** dbname=app",
        ),
        (
            f"host=db user=app password = '{password}' dbname=app",
            "host=db user=app password = *** dbname=app",
        ),
    ):
        assert mask_dsn(dsn) == expected


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "disk is full"),
        (errno.EISDIR, "is a directory"),
        (errno.ENOTDIR, "not a directory"),
        (errno.ENOENT, "does not exist"),
    ],
)
def test_os_errors_say_what_to_fix(code: int, words: str) -> None:
    assert words in hint(OSError(code, "x"))


def test_the_message_names_target_operation_fix_and_key_and_keeps_the_cause() -> None:
    cause = sqlite3.OperationalError("database is locked")
    error = store_fault(
        aiguard.StoreError,
        cause,
        component="the aiguard database",
        target="/srv/aiguard.db",
        operation="read consent records",
        key="database",
    )
    assert isinstance(error, aiguard.StoreError) and error.code == "store_error"
    text = str(error)
    for part in ("/srv/aiguard.db", "read consent records", "locked", "policy key database"):
        assert part in text
    assert error.__cause__ is cause


def test_translating_raises_typed_and_lets_other_errors_through() -> None:
    with (
        pytest.raises(aiguard.ProvenanceError) as caught,
        translating(aiguard.ProvenanceError, component="c", target="t", operation="o", key="k"),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(caught.value.__cause__, OSError)
    with (
        pytest.raises(KeyError),
        translating(aiguard.ProvenanceError, component="c", target="t", operation="o", key="k"),
    ):
        raise KeyError("a bug is not a fault")
    already = aiguard.VaultError("typed already")
    with (
        pytest.raises(aiguard.VaultError) as same,
        translating(aiguard.ProvenanceError, component="c", target="t", operation="o", key="k"),
    ):
        raise already
    assert same.value is already


def test_a_driver_error_that_can_quote_values_is_not_kept() -> None:
    psycopg = pytest.importorskip("psycopg")
    quoting = psycopg.errors.UniqueViolation("Key (subject)=(jane@example.com) already exists")
    error = store_fault(
        aiguard.StoreError, quoting, component="c", target="t", operation="o", key="k"
    )
    assert error.__cause__ is None
    assert "jane@example.com" not in str(error)
    assert "UniqueViolation" in str(error)
