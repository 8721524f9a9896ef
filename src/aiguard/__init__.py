"""aiguard: compliant calls to AI models, by construction.

Classify what is in a call, check consent and the destination, replace identifiers with
reversible tokens before anything leaves the process, restore them in the answer, and
keep a tamper-evident record of it all.
"""

from __future__ import annotations

from . import _compat, errors
from ._version import __version__
from .classify.detectors import Detector, Finding, KnownValue, detect
from .classify.levels import Classified, FieldClass, Level, classified_fields
from .classify.structured import DepthLimitExceeded, JsonFinding, detect_json
from .compliance.dsr import DataSubjectRights, Principal, ReidentificationDenied
from .consent.sqlite import SQLiteConsentStore
from .consent.store import ConsentRecord, ConsentStore, InMemoryConsentStore
from .context import CallContext, current_context
from .doors.dataset import DatasetReport, prepare_dataset
from .doors.transport import AsyncGuardTransport, GuardTransport
from .errors import (
    AIGuardError,
    ConsentRequired,
    DestinationRevoked,
    MalformedPayload,
    PolicyDenied,
    PolicyError,
    ProvenanceError,
    StoreError,
    UnknownDestination,
    VaultError,
)
from .guard import CallObserver, Guard, Protected, wrap
from .pipeline.call import Decision, ProtectedFinding
from .policy.killswitch import KillSwitch, SQLiteKillSwitch
from .policy.loader import load_policy
from .policy.model import Action, DestinationPolicy, Policy, PurposePolicy
from .provenance.chain import EventRecord, Sink
from .provenance.sinks import InMemorySink, JsonlSink
from .provenance.verify import VerifyReport, verify_file
from .vault.keys import KeyProvider
from .vault.memory import InMemoryVault, Vault
from .vault.sqlite import SQLiteVault
from .vault.tokens import Scope

_compat.install()

__all__ = [
    "AIGuardError",
    "Action",
    "AsyncGuardTransport",
    "CallContext",
    "CallObserver",
    "Classified",
    "ConsentRecord",
    "ConsentRequired",
    "ConsentStore",
    "DataSubjectRights",
    "DatasetReport",
    "Decision",
    "DepthLimitExceeded",
    "DestinationPolicy",
    "DestinationRevoked",
    "Detector",
    "EventRecord",
    "FieldClass",
    "Finding",
    "Guard",
    "GuardTransport",
    "InMemoryConsentStore",
    "InMemorySink",
    "InMemoryVault",
    "JsonFinding",
    "JsonlSink",
    "KeyProvider",
    "KillSwitch",
    "KnownValue",
    "Level",
    "MalformedPayload",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "Principal",
    "Protected",
    "ProtectedFinding",
    "ProvenanceError",
    "PurposePolicy",
    "ReidentificationDenied",
    "SQLiteConsentStore",
    "SQLiteKillSwitch",
    "SQLiteVault",
    "Scope",
    "Sink",
    "StoreError",
    "UnknownDestination",
    "Vault",
    "VaultError",
    "VerifyReport",
    "__version__",
    "classified_fields",
    "current_context",
    "detect",
    "detect_json",
    "errors",
    "load_policy",
    "prepare_dataset",
    "verify_file",
    "wrap",
]
