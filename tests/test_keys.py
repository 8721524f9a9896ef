"""Root keys: key file permissions and size, the environment provider, rotation."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import pytest

from aiguard.cli import main
from aiguard.errors import VaultError
from aiguard.vault import InMemoryVault, Scope, SQLiteVault
from aiguard.vault.keys import (
    ROOT_KEY_BYTES,
    EnvKeyProvider,
    KeyProvider,
    KeyProviderError,
    LocalKeyFileProvider,
    SecretKeyProvider,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
SCOPE = Scope("acme", "conv-1")
JANE = "jane.doe@example.com"
BOB = "bob.roe@example.com"


# -- the key file ---------------------------------------------------------------------------


@posix_only
def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "root.key"
    first = LocalKeyFileProvider(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == ROOT_KEY_BYTES
    second = LocalKeyFileProvider(path)
    assert first.key_id == second.key_id
    blob = first.wrap(b"k" * 32, b"ctx")
    assert second.unwrap(blob, b"ctx") == b"k" * 32
    assert isinstance(first, KeyProvider)
    assert path.read_bytes().hex() not in repr(first)


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_key_file_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "root.key"
    LocalKeyFileProvider(path)
    secret = path.read_bytes()
    path.chmod(mode)
    with pytest.raises(KeyProviderError, match="chmod 600") as caught:
        LocalKeyFileProvider(path)
    assert secret.hex() not in str(caught.value)
    assert path.read_bytes() == secret  # never replaced


@pytest.mark.parametrize("size", [0, 16, ROOT_KEY_BYTES - 1, ROOT_KEY_BYTES + 1, 64])
def test_key_file_of_the_wrong_size_is_refused_and_kept(tmp_path: Path, size: int) -> None:
    path = tmp_path / "root.key"
    content = os.urandom(size)
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match="bytes"):
        LocalKeyFileProvider(path)
    assert path.read_bytes() == content  # a new key would orphan every stored key


def test_missing_key_file_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="does not exist"):
        LocalKeyFileProvider(tmp_path / "absent.key", create=False)
    assert not (tmp_path / "absent.key").exists()


def test_secret_provider_rejects_wrong_sizes_and_types() -> None:
    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(KeyProviderError):
            SecretKeyProvider(bad)
    with pytest.raises(KeyProviderError):
        SecretKeyProvider("x" * 32)  # type: ignore[arg-type]


def test_unwrap_checks_context_and_integrity() -> None:
    provider = SecretKeyProvider(os.urandom(32))
    blob = provider.wrap(b"d" * 32, b"tenant-a")
    with pytest.raises(KeyProviderError):
        provider.unwrap(blob, b"tenant-b")  # a key copied to another row does not unwrap
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyProviderError):
        provider.unwrap(tampered, b"tenant-a")
    with pytest.raises(KeyProviderError, match="malformed"):
        provider.unwrap(b"\x01short", b"tenant-a")
    with pytest.raises(KeyProviderError):
        SecretKeyProvider(os.urandom(32)).unwrap(blob, b"tenant-a")


# -- the environment provider ----------------------------------------------------------------


def test_env_provider_reads_base64_and_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.urandom(32)
    monkeypatch.setenv("AIGUARD_ROOT_KEY", base64.b64encode(root).decode())
    from_b64 = EnvKeyProvider()
    monkeypatch.setenv("MY_KEY", root.hex())
    from_hex = EnvKeyProvider("MY_KEY")
    assert from_b64.variable == "AIGUARD_ROOT_KEY"
    blob = from_b64.wrap(b"x" * 32, b"c")
    assert from_hex.unwrap(blob, b"c") == b"x" * 32
    # The same bytes in a key file are the same root.
    assert SecretKeyProvider(root).unwrap(blob, b"c") == b"x" * 32


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 at all!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"y" * 48).decode(),
        "zz" * 32,
    ],
)
def test_env_provider_refuses_missing_or_malformed(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AIGUARD_ROOT_KEY", value)
    with pytest.raises(KeyProviderError, match="AIGUARD_ROOT_KEY") as caught:
        EnvKeyProvider()
    if value:
        assert value not in str(caught.value)


def test_env_provider_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIGUARD_ROOT_KEY", raising=False)
    with pytest.raises(KeyProviderError, match="not set"):
        EnvKeyProvider()


# -- rotation ---------------------------------------------------------------------------------


def _fill(vault: InMemoryVault | SQLiteVault) -> dict[str, str]:
    return {
        vault.tokenize(SCOPE, "email", JANE, "cust-1"): JANE,
        vault.tokenize(SCOPE, "email", BOB, "cust-2"): BOB,
        vault.tokenize(Scope("other"), "phone", "+1 415 555 0132", None): "+1 415 555 0132",
    }


def test_rotate_keeps_old_tokens_and_refuses_the_old_root(tmp_path: Path) -> None:
    old_root = LocalKeyFileProvider(tmp_path / "old.key")
    database = tmp_path / "vault.db"
    vault = SQLiteVault(database, old_root)
    issued = _fill(vault)
    assert vault.key_version == 1
    new_root = LocalKeyFileProvider(tmp_path / "new.key")
    report = vault.rotate(new_root)
    assert report.data_version == 2 and report.tenants == 2 and report.rewrapped > 0
    assert report.root_key_id == new_root.key_id != old_root.key_id
    later = vault.tokenize(SCOPE, "email", "new@example.com", "cust-1")
    assert vault.tokenize(SCOPE, "email", JANE, "cust-1") in issued  # deterministic still
    vault.close()

    reopened = SQLiteVault(database, LocalKeyFileProvider(tmp_path / "new.key"))
    for token, value in issued.items():
        scope = Scope("other") if value.startswith("+") else SCOPE
        assert reopened.detokenize(scope, token) == value
    assert reopened.detokenize(SCOPE, later) == "new@example.com"
    assert reopened.export_subject("cust-1")[-1]["key_version"] == 2
    reopened.close()

    with pytest.raises(KeyProviderError) as caught:
        SQLiteVault(database, LocalKeyFileProvider(tmp_path / "old.key"))
    assert JANE not in str(caught.value)


def test_rotate_without_new_root_rewraps_under_a_new_kek(tmp_path: Path) -> None:
    root = SecretKeyProvider(os.urandom(32))
    vault = SQLiteVault(tmp_path / "v.db", root)
    issued = _fill(vault)
    first = vault.rotate()
    second = vault.rotate()
    assert (first.data_version, second.data_version) == (2, 3)
    vault.close()
    reopened = SQLiteVault(tmp_path / "v.db", root)
    assert reopened.key_version == 3
    assert reopened.detokenize(SCOPE, next(iter(issued))) == JANE
    import sqlite3

    with sqlite3.connect(tmp_path / "v.db") as conn:
        keks = conn.execute(
            "SELECT tenant, version FROM aiguard_vault_key WHERE purpose = 'kek' ORDER BY tenant"
        ).fetchall()
        wrapped_by = {
            row[0]
            for row in conn.execute("SELECT wrapped_by FROM aiguard_vault_key WHERE purpose='dek'")
        }
    assert keks == [("acme", 3), ("other", 3)]  # old KEK versions are gone
    assert wrapped_by == {"kek:3"}
    reopened.close()


def test_rotate_in_memory_vault_and_erasure_after_rotation() -> None:
    vault = InMemoryVault(SecretKeyProvider(os.urandom(32)))
    issued = _fill(vault)
    vault.rotate(SecretKeyProvider(os.urandom(32)))
    for token, value in issued.items():
        scope = Scope("other") if value.startswith("+") else SCOPE
        assert vault.detokenize(scope, token) == value
    assert vault.erase_subject("cust-1", marker=True) == 1
    jane = next(t for t, v in issued.items() if v == JANE)
    assert vault.detokenize(SCOPE, jane) == "[ERASED]"


def test_cli_keys_rotate_moves_to_a_new_key_file(tmp_path: Path) -> None:
    policy = tmp_path / "aiguard.toml"
    policy.write_text(
        'database = "aiguard.db"\n[destinations.x]\nbase_url = "https://x.example"\n'
        '[keys]\nprovider = "file"\nfile = "root.key"\n'
    )
    vault = SQLiteVault(tmp_path / "aiguard.db", LocalKeyFileProvider(tmp_path / "root.key"))
    token = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    vault.close()
    assert (
        main(["keys", "rotate", "--policy", str(policy), "--new-key-file", str(tmp_path / "n.key")])
        == 0
    )
    (tmp_path / "root.key").unlink()
    os.replace(tmp_path / "n.key", tmp_path / "root.key")
    vault = SQLiteVault(tmp_path / "aiguard.db", LocalKeyFileProvider(tmp_path / "root.key"))
    assert vault.detokenize(SCOPE, token) == JANE
    assert vault.key_version == 2
    vault.close()


def test_key_errors_are_vault_errors() -> None:
    assert issubclass(KeyProviderError, VaultError)


def test_cli_keys_public_writes_what_verify_public_key_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keys public` → `verify --public-key`: a newcomer's signed log verifies end to end."""
    from aiguard.guard import Guard

    policy = tmp_path / "aiguard.toml"
    policy.write_text(
        '[destinations.x]\nbase_url = "https://x.example"\napproved = true\n'
        'purposes = ["inference"]\n'
        '[provenance]\njsonl = "log.jsonl"\nlog = "acme-log"\nsigning_key = "signing.key"\n'
    )
    assert main(["keys", "public", "--policy", str(policy)]) == 2
    assert "no signing key at" in capsys.readouterr().err
    with Guard.from_toml(policy) as guard, guard.context(purpose="inference"):
        guard.protect("hello", destination="x")
    public = tmp_path / "public.vkey"
    assert main(["keys", "public", "--policy", str(policy), "--out", str(public)]) == 0
    assert public.read_text().startswith("acme-log+")
    log = str(tmp_path / "log.jsonl")
    assert main(["verify", log, "--public-key", str(public)]) == 0
    # A key that is not the log's is refused: the command wrote the right one.
    other = tmp_path / "other.vkey"
    (tmp_path / "other.toml").write_text(
        '[destinations.x]\nbase_url = "https://x.example"\n'
        '[provenance]\nlog = "acme-log"\nsigning_key = "other.key"\n'
    )
    with Guard.from_toml(tmp_path / "other.toml"):
        pass
    assert (
        main(["keys", "public", "--policy", str(tmp_path / "other.toml"), "--out", str(other)]) == 0
    )
    assert main(["verify", log, "--public-key", str(other)]) == 1


def test_cli_keys_public_without_signing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "aiguard.toml"
    policy.write_text('[destinations.x]\nbase_url = "https://x.example"\n')
    assert main(["keys", "public", "--policy", str(policy)]) == 2
    assert "names no [provenance] signing_key" in capsys.readouterr().err
