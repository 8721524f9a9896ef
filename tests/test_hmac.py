"""The pad-cached HMAC gives the standard library's digest for every key and message."""

from __future__ import annotations

import copy
import dataclasses
import hmac
import pickle

from hypothesis import example, given
from hypothesis import strategies as st

from aiguard._hmac import KeyedSha256
from aiguard.vault.memory import VaultKeys


@given(key=st.binary(max_size=200), data=st.binary(max_size=300))
@example(key=b"", data=b"")
@example(key=b"k" * 64, data=b"x")  # exactly one block: used as it is
@example(key=b"k" * 65, data=b"x")  # longer than a block: hashed first
def test_equals_standard_hmac(key: bytes, data: bytes) -> None:
    mac = KeyedSha256(key)
    assert mac.digest(data) == hmac.digest(key, data, "sha256")
    # The cached pads are copied, never consumed: a second digest is the same.
    assert mac.hexdigest(data) == hmac.digest(key, data, "sha256").hex()


def test_repr_hides_the_key() -> None:
    assert "secret" not in repr(KeyedSha256(b"secret" * 8))


def test_vault_keys_digest_with_their_own_keys() -> None:
    keys = VaultKeys.generate()
    assert keys.index_mac.digest(b"v") == hmac.digest(keys.index_key, b"v", "sha256")
    assert keys.token_mac.digest(b"v") == hmac.digest(keys.token_key, b"v", "sha256")
    # The cached MACs take no part in equality or the repr.
    assert keys == VaultKeys(keys.version, keys.data_key, keys.index_key, keys.token_key)
    assert "index_mac" not in repr(keys)


def test_vault_keys_still_pickle_and_copy() -> None:
    keys = VaultKeys.generate(version=3)
    for clone in (pickle.loads(pickle.dumps(keys)), copy.deepcopy(keys), copy.copy(keys)):
        assert clone == keys
        assert clone.index_mac.digest(b"v") == keys.index_mac.digest(b"v")
        assert clone.token_mac.digest(b"v") == keys.token_mac.digest(b"v")
    assert dataclasses.asdict(keys)["index_key"] == keys.index_key
