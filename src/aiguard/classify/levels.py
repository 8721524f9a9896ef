"""Classification levels and the `Classified` field tag for pydantic models."""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = [
    "Classified",
    "FieldClass",
    "Level",
    "UnknownKindWarning",
    "classified_fields",
    "classified_values",
]

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Level(enum.IntEnum):
    """How much harm a value does when it leaks; ordered PUBLIC < ... < REGULATED."""

    PUBLIC = 0
    INTERNAL = 1
    SENSITIVE = 2
    REGULATED = 3

    @classmethod
    def parse(cls, name: str | Level) -> Level:
        """Accept a member or its case-insensitive name (``"sensitive"``)."""
        if isinstance(name, Level):
            return name
        try:
            return cls[name.upper()]
        except KeyError:
            allowed = ", ".join(m.name.lower() for m in cls)
            raise ValueError(f"unknown level {name!r}; use one of {allowed}") from None

    @property
    def label(self) -> str:
        # A table, not ``self.name.lower()``: enum's ``name`` is a descriptor, and every
        # finding's level is labelled for its event.
        return _LABELS[self]


_LABELS = {level: level.name.lower() for level in Level}


def check_kind(kind: str) -> str:
    """Kinds are lower-case ids so they are safe as JSON keys and token labels."""
    if not _KIND_RE.match(kind):
        raise ValueError(
            f"invalid kind {kind!r}: use a lower-case id such as 'email' or 'account' "
            "(letters, digits and underscores, starting with a letter)"
        )
    return kind


class UnknownKindWarning(UserWarning):
    """A tag's kind is no built-in kind but is close to one: probably a typo."""


# Kinds the NER engines and known-value matching give besides the engine's own; the
# engine's kinds are added by `aiguard.classify.kinds` as it defines and registers them
# (so this module, which the kinds import, never imports them back).
_KNOWN_KINDS: set[str] = {"data", "person", "location", "organization", "address"}


def add_known_kinds(kinds: Iterable[str]) -> None:
    """Kinds a tag may name without a did-you-mean warning."""
    _KNOWN_KINDS.update(kinds)


def _warn_if_misspelt(kind: str) -> None:
    """Warn for ``"emial"``; stay quiet for custom kinds (``"diagnosis"``, ``"account"``).

    Custom kinds are legitimate (a policy pattern or a tagged field can name any), so
    only a near miss of a built-in kind warns: its values would still be protected as
    known values, but a per-kind policy rule or level for the real kind would not apply.
    """
    import difflib
    import warnings

    if kind in _KNOWN_KINDS:
        return
    close = difflib.get_close_matches(kind, _KNOWN_KINDS, n=1, cutoff=0.8)
    if close:
        warnings.warn(
            f"Classified kind {kind!r} is not a built-in kind; did you mean {close[0]!r}? "
            "(a custom kind is fine: silence this with a name further from a built-in one)",
            UnknownKindWarning,
            stacklevel=4,
        )


@dataclass(frozen=True, slots=True)
class Classified:
    """Tag for a field: ``Annotated[str, Classified(Level.SENSITIVE, "person")]``.

    The tag is pydantic metadata: it changes nothing about validation, and it adds
    ``x-aiguard-level`` / ``x-aiguard-kind`` to the model's JSON schema so tools that only
    see the schema classify the same way.
    """

    level: Level
    kind: str = "data"

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", Level.parse(self.level))
        check_kind(self.kind)
        _warn_if_misspelt(self.kind)

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["x-aiguard-level"] = self.level.label
        schema["x-aiguard-kind"] = self.kind
        return schema


@dataclass(frozen=True, slots=True)
class FieldClass:
    """One classified location: a dotted path (``[]`` for list items), its level and kind."""

    path: str
    level: Level
    kind: str


def _tag_of(metadata: list[Any]) -> Classified | None:
    for item in metadata:
        if isinstance(item, Classified):
            return item
    return None


def _inner_models(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """Pydantic models reachable through an annotation, with the path suffix to reach them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _inner_models(args[0])
        return
    if origin in (list, tuple, set, frozenset) or (
        origin is not None and getattr(origin, "__name__", "") in {"Sequence", "Iterable"}
    ):
        for arg in args:
            if arg is not Ellipsis:
                for suffix, model in _inner_models(arg):
                    yield "[]" + suffix, model
        return
    if origin is dict or (origin is not None and getattr(origin, "__name__", "") == "Mapping"):
        if len(args) == 2:
            for suffix, model in _inner_models(args[1]):
                yield "{}" + suffix, model
        return
    for arg in args:  # unions and optionals
        yield from _inner_models(arg)


def classified_fields(model: type[BaseModel], prefix: str = "") -> Iterator[FieldClass]:
    """Walk a pydantic model class and yield every tagged field, nested models included."""
    yield from _walk_model(model, prefix, frozenset())


def _walk_model(
    model: type[BaseModel], prefix: str, seen: frozenset[type[BaseModel]]
) -> Iterator[FieldClass]:
    if model in seen:  # recursive models: each class is walked once per branch
        return
    seen = seen | {model}
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        tag = _tag_of(list(info.metadata))
        if tag is not None:
            yield FieldClass(path, tag.level, tag.kind)
        for suffix, inner in _inner_models(info.annotation):
            yield from _walk_model(inner, path + suffix, seen)


def classified_values(
    instance: BaseModel, prefix: str = ""
) -> Iterator[tuple[str, Any, Classified]]:
    """Yield (path, value, tag) for every tagged field set on a model instance."""
    for name, info in type(instance).model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        value = getattr(instance, name, None)
        tag = _tag_of(list(info.metadata))
        if tag is not None and value is not None:
            yield path, value, tag
        yield from _values_below(value, path)


def _values_below(value: Any, path: str) -> Iterator[tuple[str, Any, Classified]]:
    if isinstance(value, BaseModel):
        yield from classified_values(value, path)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            yield from _values_below(item, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _values_below(item, f"{path}.{key}")


def schema_fields(schema: Mapping[str, Any]) -> Iterator[FieldClass]:
    """Walk a JSON schema produced by pydantic and yield the tagged properties."""
    defs: Mapping[str, Any] = schema.get("$defs", {})

    def walk(node: Mapping[str, Any], path: str, seen: frozenset[str]) -> Iterator[FieldClass]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in seen or name not in defs:
                return
            yield from walk(defs[name], path, seen | {name})
            return
        level = node.get("x-aiguard-level")
        if isinstance(level, str) and path:
            yield FieldClass(path, Level.parse(level), str(node.get("x-aiguard-kind", "data")))
        for key, sub in node.get("properties", {}).items():
            yield from walk(sub, f"{path}.{key}" if path else key, seen)
        items = node.get("items")
        if isinstance(items, Mapping):
            yield from walk(items, path + "[]", seen)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            yield from walk(extra, path + "{}", seen)
        for combinator in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(combinator, []):
                yield from walk(sub, path, seen)

    yield from walk(schema, "", frozenset())
