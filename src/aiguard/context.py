"""The call context: who calls, about whom, for what, carried in a ``contextvars`` variable.

Async tasks created inside a context see it (asyncio copies the context into new
tasks), and nested contexts inherit every field they do not set.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from .classify.detectors import KnownValue
from .classify.levels import classified_values

__all__ = ["CallContext", "ContextScope", "current_context"]

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class CallContext:
    """Everything the policy needs to know about a call besides its payload."""

    subject: str | None = None
    tenant: str = DEFAULT_TENANT
    purpose: str | None = None
    conversation: str | None = None
    principal: str | None = None
    use_for_training: bool = False
    #: Force a destination instead of routing by URL (direct `protect` calls).
    destination: str | None = None
    #: Values the application knows are personal (tagged fields of its inputs).
    known: tuple[KnownValue, ...] = field(default=())
    #: The dataset or model version a call feeds or uses (training lineage, audits).
    dataset_version: str | None = None
    model_version: str | None = None
    #: Where an explanation of an automated decision is kept (an id or URL, not the text).
    explanation_ref: str | None = None


_CURRENT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "aiguard_call_context", default=None
)


def current_context() -> CallContext | None:
    """The context of the running call, or None outside any ``guard.context``."""
    return _CURRENT.get()


def known_values(
    items: Iterable[BaseModel | KnownValue] | BaseModel | KnownValue,
) -> tuple[KnownValue, ...]:
    """Tagged string fields of pydantic objects become known values for detection.

    One object is taken as a list of one (``known=customer``): a pydantic model is
    itself iterable, over ``(name, value)`` pairs, which are not known values.
    """
    if isinstance(items, (BaseModel, KnownValue)):
        items = [items]
    elif isinstance(items, (str, bytes)):
        raise TypeError(
            "known= takes pydantic objects with Classified fields (or KnownValue), "
            "not a string: known=[customer]"
        )
    out: list[KnownValue] = []
    for item in items:
        if not isinstance(item, (BaseModel, KnownValue)):
            raise TypeError(
                f"known= takes pydantic objects with Classified fields (or KnownValue), "
                f"not {type(item).__name__}"
            )
        if isinstance(item, KnownValue):
            out.append(item)
            continue
        for _path, value, tag in classified_values(item):
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                out.append(KnownValue(str(value), tag.kind, tag.level))
    return tuple(out)


UNSET: Any = object()


class ContextScope:
    """Sets a `CallContext` for a ``with`` or ``async with`` block, then restores the outer one."""

    __slots__ = ("_changes", "_context", "_token")

    def __init__(self, **changes: Any) -> None:
        self._changes = {k: v for k, v in changes.items() if v is not UNSET}
        self._token: contextvars.Token[CallContext | None] | None = None
        self._context: CallContext | None = None

    def _enter(self) -> CallContext:
        if self._token is not None:
            raise RuntimeError("this guard.context(...) is already active; create a new one")
        base = _CURRENT.get()
        changes = dict(self._changes)
        if "known" in changes:
            changes["known"] = (base.known if base else ()) + known_values(changes["known"])
        # Outside any context (the usual case) nothing is inherited: built directly, at
        # a third of the cost of copying a default context with `replace`.
        context = CallContext(**changes) if base is None else replace(base, **changes)
        if not context.tenant:
            raise ValueError("tenant must be a non-empty string")
        self._context = context
        self._token = _CURRENT.set(context)
        return context

    def _exit(self) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None

    def __enter__(self) -> CallContext:
        return self._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit()

    async def __aenter__(self) -> CallContext:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit()
