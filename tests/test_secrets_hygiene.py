"""Keys never appear in reprs, logs or exceptions; key files are created private."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest

import aiguard
from aiguard.provenance.checkpoint import Signer
from aiguard.vault import InMemoryVault, SQLiteVault, VaultKeys, load_or_create_key
from aiguard.vault.keys import (
    EnvKeyProvider,
    KeyProviderError,
    LocalKeyFileProvider,
    SecretKeyProvider,
)

SECRET = bytes(range(32))


def _forms(key: bytes) -> list[str]:
    """Ways a key could be printed."""
    return [
        repr(key)[2:-1][:24],
        key.hex()[:16],
        base64.b64encode(key).decode()[:16],
        base64.urlsafe_b64encode(key).decode()[:16],
    ]


def _assert_absent(text: str, *keys: bytes) -> None:
    for key in keys:
        for form in _forms(key):
            assert form not in text, "a key shows up in text meant for humans"


def test_vault_keys_repr_hides_keys() -> None:
    keys = VaultKeys.derive(SECRET)
    _assert_absent(repr(keys) + str(keys), keys.data_key, keys.index_key, keys.token_key)
    assert "version=1" in repr(keys)


def test_guard_vault_provider_and_signer_reprs_hide_keys(tmp_path: Path) -> None:
    keys = VaultKeys.derive(SECRET)
    guard = aiguard.Guard(secret=SECRET)
    provider = SecretKeyProvider(SECRET)
    file_provider = LocalKeyFileProvider(tmp_path / "root.key")
    signer = Signer.generate("test-log")
    from cryptography.hazmat.primitives import serialization

    private = signer_private_bytes(signer, serialization)
    texts = [
        repr(guard),
        repr(guard.vault),
        repr(InMemoryVault(keys)),
        repr(SQLiteVault(tmp_path / "v.db", keys)),
        repr(provider),
        repr(file_provider),
        repr(signer),
    ]
    joined = "\n".join(texts)
    _assert_absent(joined, SECRET, keys.data_key, keys.index_key, keys.token_key, private)
    _assert_absent(repr(file_provider), (tmp_path / "root.key").read_bytes())


def signer_private_bytes(signer: Signer, serialization: object) -> bytes:
    key = next(v for v in vars(signer).values() if hasattr(v, "private_bytes_raw"))
    raw: bytes = key.private_bytes_raw()
    return raw


@pytest.mark.parametrize(
    "content",
    [b"short", b"\x00" * 31, b"x" * 33, SECRET + b"\n" + SECRET],
    ids=["short", "31", "33", "two-keys"],
)
def test_bad_key_files_fail_without_quoting_the_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    for load in (LocalKeyFileProvider, load_or_create_key):
        with pytest.raises(Exception) as caught:
            load(path)
        text = str(caught.value) + repr(caught.value)
        _assert_absent(text, content.ljust(32, b"\x00")[:32])
        assert content.decode("latin-1")[:5] not in text or len(content) < 5


def test_bad_env_key_fails_without_quoting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = base64.b64encode(b"k" * 31).decode()
    monkeypatch.setenv("AIGUARD_TEST_ROOT", bogus)
    with pytest.raises(KeyProviderError) as caught:
        EnvKeyProvider("AIGUARD_TEST_ROOT")
    assert bogus not in str(caught.value)


def test_wrong_root_key_error_does_not_quote_keys(tmp_path: Path) -> None:
    SQLiteVault(tmp_path / "v.db", VaultKeys.derive(SECRET))
    other = VaultKeys.derive(b"o" * 32)
    with pytest.raises(aiguard.VaultError) as caught:
        SQLiteVault(tmp_path / "v.db", other)
    _assert_absent(str(caught.value), SECRET, other.data_key, other.index_key)


def test_key_files_are_created_private(tmp_path: Path) -> None:
    load_or_create_key(tmp_path / "a.key")
    LocalKeyFileProvider(tmp_path / "b.key")
    Signer.from_file(tmp_path / "c.key", "log", create=True)
    for name in ("a.key", "b.key", "c.key"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


def test_a_world_readable_root_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        LocalKeyFileProvider(path)


def test_keys_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        keys = VaultKeys.derive(SECRET)
        guard = aiguard.Guard(secret=SECRET, vault=SQLiteVault(tmp_path / "v.db", keys))
        with guard.context(tenant="t", purpose="inference"):
            guard.detect("jane@example.com")
        guard.close()
    _assert_absent(caplog.text, SECRET, keys.data_key, keys.index_key, keys.token_key)


def test_secret_comparisons_are_constant_time() -> None:
    """Every comparison of a MAC, key check value or API key uses hmac.compare_digest."""
    import re

    root = Path(aiguard.__file__).parent
    suspicious = re.compile(
        r"(?<![A-Za-z_.])\w*?(mac|kcv|key_check|tag|api_key|secret)\w*\s*(==|!=)\s*\w+",
        re.IGNORECASE,
    )
    hits = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if suspicious.search(line) and "compare_digest" not in line and "kind" not in line
    ]
    assert hits == [], hits


def test_http_sink_repr_hides_credentials_in_its_url(tmp_path: Path) -> None:
    """A collector URL with a password or a token in it never shows up in a repr."""
    from aiguard.provenance.http_sink import HttpSink

    sink = HttpSink(
        "https://user:s3cr3t-pass@127.0.0.1:8443/ingest?token=abc123secret",
        spool_dir=tmp_path / "spool",
    )
    try:
        text = repr(sink)
        assert "s3cr3t-pass" not in text and "abc123secret" not in text
        assert "127.0.0.1:8443" in text
    finally:
        sink.close()
