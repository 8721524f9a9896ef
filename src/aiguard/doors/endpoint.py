"""The decorator door: ``@guard.endpoint(...)`` on a handler, sync or async, FastAPI or not.

    guard = Guard.from_toml("aiguard.toml")

    @app.post("/tickets/{customer_id}/reply")
    @guard.endpoint(purpose="inference", destination="openai", subject_from="customer_id")
    async def draft_reply(customer_id: str, ticket: Ticket) -> Reply:
        ...  # calls the model through guard.http_client() / guard.protect()

Each call of the handler runs inside ``guard.context(...)`` built from its arguments:
the subject (and tenant, conversation) taken from an argument or computed from the
bound arguments, ``use_for_training`` from an argument of that name (False when there
is none), and the handler's pydantic arguments as known values, so a tagged field
(``Annotated[str, Classified(Level.SENSITIVE, "person")]``) is protected wherever its
value turns up in free text. The decorator changes nothing else: FastAPI still sees
the handler's parameters, defaults and ``Depends``.

Every decorated handler is recorded in `registry()` with its purpose, destination and
the tagged fields of its argument models: the inventory of what reaches which model.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast

from pydantic import BaseModel

from ..classify.levels import FieldClass, classified_fields
from ..context import UNSET, ContextScope

if TYPE_CHECKING:
    from ..pipeline.host import GuardHost

__all__ = [
    "ArgumentModel",
    "ArgumentSource",
    "EndpointDecorator",
    "EndpointInfo",
    "endpoint",
    "registry",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Where an id comes from: the name of an argument (``"customer_id"``, or a dotted path
#: into it such as ``"ticket.customer_id"``), or a callable receiving the bound arguments.
ArgumentSource: TypeAlias = "str | Callable[[inspect.BoundArguments], Any]"


class EndpointDecorator(Protocol):
    """What ``guard.endpoint(...)`` returns: a decorator that keeps the handler's signature."""

    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


@dataclass(frozen=True, slots=True)
class ArgumentModel:
    """A pydantic model a handler takes, and its tagged fields."""

    argument: str
    model: type[BaseModel]
    fields: tuple[FieldClass, ...]

    @property
    def model_name(self) -> str:
        return f"{self.model.__module__}.{self.model.__qualname__}"


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One decorated handler, as the inventory reports it."""

    name: str
    purpose: str
    destination: str | None
    models: tuple[ArgumentModel, ...]
    is_async: bool
    enabled: bool

    @property
    def fields(self) -> tuple[FieldClass, ...]:
        """Every tagged field the handler receives, paths prefixed with the argument name."""
        return tuple(
            FieldClass(f"{arg.argument}.{field.path}", field.level, field.kind)
            for arg in self.models
            for field in arg.fields
        )


_registry_lock = threading.Lock()
_registry: dict[str, EndpointInfo] = {}


def registry() -> tuple[EndpointInfo, ...]:
    """Every handler decorated so far in this process, sorted by qualified name.

    Handlers are recorded when their module is imported (that is when decorators run),
    so import the application before reading it.
    """
    with _registry_lock:
        return tuple(_registry[name] for name in sorted(_registry))


def _register(info: EndpointInfo) -> None:
    with _registry_lock:
        # Keyed by qualified name: re-importing or re-decorating a handler replaces it.
        _registry[info.name] = info


def endpoint(
    guard: GuardHost,
    *,
    purpose: str,
    destination: str | None = None,
    subject_from: ArgumentSource | None = None,
    tenant_from: ArgumentSource | None = None,
    conversation_from: ArgumentSource | None = None,
    enabled: bool = True,
) -> EndpointDecorator:
    """A decorator that runs a handler inside ``guard.context(...)``; see `Guard.endpoint`."""
    if not isinstance(purpose, str) or not purpose:
        raise TypeError("purpose must be a purpose name such as 'inference'")
    if enabled:
        # A typo in a decorator should fail at import, not on the first request.
        if guard.policy.purpose(purpose) is None:
            raise ValueError(
                f"unknown purpose {purpose!r}; use a built-in purpose "
                f"({', '.join(sorted(guard.policy.all_purposes))}) or declare it under [purposes]"
            )
        if destination is not None and destination not in guard.policy.destinations:
            raise ValueError(
                f"the policy names no destination {destination!r}; known destinations: "
                f"{', '.join(sorted(guard.policy.destinations)) or 'none'}"
            )

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"{name} is a generator; guard.endpoint cannot keep its context across "
                "yields. Decorate a function that returns the stream (e.g. a StreamingResponse)"
            )
        # The caller's frame: where ``@guard.endpoint(...)`` is applied, i.e. where the
        # handler and the names in its annotations were defined.
        signature = _resolved_signature(func, dict(sys._getframe(1).f_locals))
        for label, source in (
            ("subject_from", subject_from),
            ("tenant_from", tenant_from),
            ("conversation_from", conversation_from),
        ):
            _check_source(name, signature, label, source)
        is_async = inspect.iscoroutinefunction(func)
        _register(
            EndpointInfo(
                name, purpose, destination, tuple(_argument_models(signature)), is_async, enabled
            )
        )
        if not enabled:
            return func
        has_training_flag = "use_for_training" in signature.parameters

        def scope(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ContextScope:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            tenant = _value(subject=False, source=tenant_from, bound=bound)
            return guard.context(
                purpose=purpose,
                destination=destination if destination is not None else UNSET,
                subject=_value(subject=True, source=subject_from, bound=bound),
                tenant=tenant if tenant is not None else UNSET,
                conversation=_value(subject=False, source=conversation_from, bound=bound),
                use_for_training=(
                    bound.arguments.get("use_for_training") is True if has_training_flag else False
                ),
                known=list(_models_in(bound.arguments.values())),
            )

        if is_async:

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with scope(args, kwargs):
                    return await cast("Callable[..., Any]", func)(*args, **kwargs)

            wrapper: Callable[..., Any] = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                with scope(args, kwargs):
                    return func(*args, **kwargs)

            wrapper = sync_wrapper
        # Annotations resolved here, where the handler's module is known, so frameworks
        # that read the signature (FastAPI) see real types even for string annotations.
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        return cast("Callable[P, R]", wrapper)

    return decorate


def _resolved_signature(func: Callable[..., Any], localns: dict[str, Any]) -> inspect.Signature:
    """The signature with string annotations evaluated where the handler was defined.

    ``localns`` is the namespace of the code applying the decorator, so a model or a
    dependency defined inside a function (an app factory, a test) resolves too. An
    annotation that cannot be evaluated stays a string, as it was.
    """
    signature = inspect.signature(func)
    globalns = getattr(inspect.unwrap(func), "__globals__", {})

    def resolve(annotation: Any) -> Any:
        if not isinstance(annotation, str):
            return annotation
        try:
            # What typing.get_type_hints does, one annotation at a time.
            return eval(annotation, globalns, localns)
        except Exception:
            return annotation

    return signature.replace(
        parameters=[
            param.replace(annotation=resolve(param.annotation))
            for param in signature.parameters.values()
        ],
        return_annotation=resolve(signature.return_annotation),
    )


def _check_source(
    name: str, signature: inspect.Signature, label: str, source: ArgumentSource | None
) -> None:
    if source is None or callable(source):
        return
    if not isinstance(source, str) or not source:
        raise TypeError(f"{label} must be an argument name or a callable, not {source!r}")
    head = source.split(".", 1)[0]
    if head not in signature.parameters:
        raise TypeError(
            f"{label}={source!r} names no parameter of {name}; its parameters are "
            f"{', '.join(signature.parameters) or 'none'}"
        )


def _value(*, subject: bool, source: ArgumentSource | None, bound: inspect.BoundArguments) -> Any:
    """The id named by ``source``; UNSET (inherit the outer context) when there is none."""
    if source is None:
        return UNSET
    if callable(source):
        value = source(bound)
    else:
        head, *rest = source.split(".")
        value = bound.arguments.get(head)
        for part in rest:
            if value is None:
                break
            value = value.get(part) if isinstance(value, dict) else getattr(value, part)
    if value is None:
        # An absent subject or conversation stays absent: inheriting an outer context's
        # subject would borrow someone else's consent. (The caller maps a None tenant
        # to the outer tenant, since a call always has one.)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        what = "subject" if subject else "id"
        raise TypeError(f"the {what} source gave a {type(value).__name__}, not a str id")
    return str(value)


def _models_in(values: Any) -> Iterator[BaseModel]:
    for value in values:
        if isinstance(value, BaseModel):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (item for item in value if isinstance(item, BaseModel))


def _argument_models(signature: inspect.Signature) -> Iterator[ArgumentModel]:
    for param in signature.parameters.values():
        for model in _models_of(param.annotation):
            fields = tuple(classified_fields(model))
            yield ArgumentModel(param.name, model, fields)


def _models_of(annotation: Any) -> Iterator[type[BaseModel]]:
    # On 3.9 and 3.10, `list[M]` passes isinstance(x, type); its origin tells it apart.
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        if issubclass(annotation, BaseModel):
            yield annotation
        return
    for arg in typing.get_args(annotation):  # Optional[M], list[M], Annotated[M, ...]
        yield from _models_of(arg)
