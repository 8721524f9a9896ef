"""Typed errors raised by aiguard.

Every error says what was wrong and what to do about it. None of them ever carries a
raw detected value: messages name kinds, paths, destinations and purposes only, so an
error that ends up in a log or a traceback leaks nothing.
"""

from __future__ import annotations

__all__ = [
    "AIGuardError",
    "ConsentRequired",
    "DestinationRevoked",
    "KeyProviderError",
    "MalformedPayload",
    "PolicyDenied",
    "PolicyError",
    "ProvenanceError",
    "StoreError",
    "UnknownDestination",
    "VaultError",
]


class AIGuardError(Exception):
    """Base class of every error aiguard raises on purpose."""

    #: Stable, machine-readable id of the error class, written into provenance events.
    code: str = "aiguard_error"

    def __init__(self, message: str, *, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = reasons


class PolicyDenied(AIGuardError):
    """The policy does not allow this call (destination, purpose, model or a blocked kind)."""

    code = "policy_denied"


class ConsentRequired(PolicyDenied):
    """The purpose needs the data subject's consent (or the caller's flag) and it is missing."""

    code = "consent_required"


class DestinationRevoked(PolicyDenied):
    """The destination was switched off with the kill switch (`Guard.revoke`)."""

    code = "destination_revoked"


class UnknownDestination(PolicyDenied):
    """The request goes to a host that no policy destination names.

    ``url`` is where it went, as the message names it (origin and path; no query).
    """

    code = "unknown_destination"

    def __init__(
        self, message: str, *, reasons: tuple[str, ...] = (), url: str | None = None
    ) -> None:
        super().__init__(message, reasons=reasons)
        self.url = url


class MalformedPayload(AIGuardError):
    """The request or answer body could not be understood, so it cannot be protected."""

    code = "malformed_payload"


class PolicyError(AIGuardError):
    """The policy file or object is invalid; the message names the key path and line."""

    code = "policy_error"

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        line: int | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.line = line
        self.source = source


class VaultError(AIGuardError):
    """The vault could not store or read a token; the call fails closed."""

    code = "vault_error"


class ProvenanceError(AIGuardError):
    """A required provenance sink could not record an event; the call fails closed."""

    code = "provenance_error"


class StoreError(AIGuardError):
    """A consent store, kill switch or shared database could not be opened, read or written.

    The message names the file or DSN (credentials masked), the operation, what to fix
    and the policy key that configures the store; the original error is ``__cause__``.
    """

    code = "store_error"


class KeyProviderError(VaultError):
    """A root key is missing, unsafe, of the wrong size, or does not unwrap a stored key."""

    code = "key_error"
