"""Token format: ``[EMAIL_7Q2K]`` — a typed label and a short keyed suffix.

The suffix alphabet is Crockford's base32 (no I, L, O, U), so tokens survive a model
copying them and never spell words. Finding tokens in text uses one compiled pattern.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

__all__ = ["SUFFIX_ALPHABET", "TOKEN_RE", "Scope", "format_token", "keyed_suffix", "label_for"]

SUFFIX_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_B32_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", SUFFIX_ALPHABET)

MIN_SUFFIX = 4
MAX_SUFFIX = 26

TOKEN_RE = re.compile(r"\[([A-Z][A-Z0-9_]{0,63})_([0-9A-HJKMNP-TV-Z]{4,26})\]")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a token means something: a tenant, and optionally one conversation in it."""

    tenant: str
    conversation: str | None = None

    @property
    def key(self) -> str:
        # Length-prefixed so ("a:b", None) and ("a", "b") can never share a key.
        conv = self.conversation or ""
        return f"{len(self.tenant)}:{self.tenant}|{len(conv)}:{conv}"


def label_for(kind: str) -> str:
    return kind.upper()


def keyed_suffix(mac: bytes, length: int) -> str:
    encoded = base64.b32encode(mac).decode("ascii").rstrip("=")
    return encoded.translate(_B32_TO_CROCKFORD)[:length]


def format_token(kind: str, suffix: str) -> str:
    return f"[{label_for(kind)}_{suffix}]"
