"""The inventory: every endpoint of an application that touches a model, and on what terms.

`load_app` imports ``MODULE[:ATTR]`` (a FastAPI app, or any module whose handlers use
``@guard.endpoint``); `build_inventory` reads the decorator's registry and, when it has
a policy, what the policy will do with each field: the document ``aiguard inventory``
prints. Its JSON form (schema ``aiguard.inventory/1``, described in docs/ci.md) only
grows: keys are added, never renamed or removed.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from ..classify.levels import Level, classified_fields
from ..doors.endpoint import EndpointInfo, registry
from ..policy.model import Policy

__all__ = [
    "FACTORY_NAMES",
    "SCHEMA",
    "App",
    "FactoryError",
    "build_inventory",
    "load_app",
    "render_markdown",
]

SCHEMA = "aiguard.inventory/1"


@dataclass
class App:
    """An imported application: its module, the object named after ``:``, its handlers."""

    spec: str
    module: ModuleType
    target: Any
    #: Qualified names of the registry entries that belong to this application.
    names: list[str]
    #: Handler functions found for those names (FastAPI routes or module attributes).
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: (method, path) pairs of FastAPI routes, by handler name.
    routes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def endpoints(self) -> int:
        """How many decorated handlers were found: zero means the gate saw nothing."""
        registered = {info.name for info in registry()}
        return sum(1 for name in self.names if name in registered)

    def guard_policy(self) -> Policy | None:
        """The policy of a `Guard` the application module defines, if it defines one."""
        for module in self.modules():
            for value in vars(module).values():
                # A guard is known by what it offers (`GuardHost`), not by importing the
                # facade: the compliance tools sit below it.
                policy = getattr(value, "policy", None)
                if isinstance(policy, Policy) and callable(getattr(value, "http_client", None)):
                    return policy
        return None

    def modules(self) -> list[ModuleType]:
        """The app module and the modules its handlers live in, without duplicates."""
        seen: dict[str, ModuleType] = {self.module.__name__: self.module}
        for func in self.functions.values():
            name = getattr(inspect.unwrap(func), "__module__", None)
            module = sys.modules.get(name) if isinstance(name, str) else None
            if module is not None:
                seen.setdefault(module.__name__, module)
        return list(seen.values())

    def source_files(self) -> list[Path]:
        """Python files of the application: its modules, and a package's whole tree."""
        files: dict[Path, None] = {}
        for module in self.modules():
            file = getattr(module, "__file__", None)
            if not file:
                continue
            path = Path(file)
            files[path] = None
            if path.name == "__init__.py":
                for child in sorted(path.parent.rglob("*.py")):
                    files[child] = None
        return list(files)


def load_app(spec: str) -> App:
    """Import ``MODULE[:ATTR]``; the current directory is importable, as for uvicorn.

    Raises `ImportError` (module) or `AttributeError` (attribute) with the spec named.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ImportError(f"{spec!r}: give a module, e.g. 'myapp.main' or 'myapp.main:app'")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    before = {info.name for info in registry()}
    module = importlib.import_module(module_name)
    target: Any = module
    if attr:
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise AttributeError(f"{spec!r}: {module_name} has no attribute {attr!r}") from None
        if _is_factory(target):
            target = _call_factory(spec, target)
    elif not _apps_in(module):
        # An app built in a factory (the pattern docs/testing.md recommends) registers
        # its handlers only when the factory runs: run it, as ``uvicorn --factory`` would.
        factory = next(
            (f for f in (getattr(module, n, None) for n in FACTORY_NAMES) if _is_factory(f)),
            None,
        )
        if factory is not None:
            target = _call_factory(spec, factory)
    app = App(spec, module, target, [])
    # Handlers this import registered, handlers defined under the module, and handlers
    # a FastAPI app routes to (wherever they are defined).
    wanted: dict[str, None] = {}
    registered = {info.name for info in registry()}
    for info in registry():
        if info.name not in before or info.name.startswith(module_name + "."):
            wanted[info.name] = None
    routed = [target] if hasattr(target, "routes") else _apps_in(target)
    for method, path, func in (r for obj in routed for r in _routes_of(obj)):
        name = _qualified(func)
        if name is None:
            continue
        if name in registered:  # other routes (docs, health) touch no model
            app.functions.setdefault(name, func)
            app.routes.setdefault(name, []).append((method, path))
            wanted[name] = None
    app.names = sorted(wanted)
    for name in app.names:
        found = app.functions.get(name) or _find_function(name)
        if found is not None:
            app.functions[name] = found
    return app


class FactoryError(RuntimeError):
    """The application's factory raised while ``load_app`` built the app."""


#: Names ``load_app`` tries, in order, on a module that defines no app and no handler.
FACTORY_NAMES = ("create_app", "make_app", "build_app", "get_app", "app_factory")


def _is_factory(value: Any) -> bool:
    """A plain function or method that is not itself an application or a handler."""
    return (
        (inspect.isfunction(value) or inspect.ismethod(value))
        and not hasattr(value, "routes")
        and _qualified(value) not in {info.name for info in registry()}
    )


def _call_factory(spec: str, factory: Callable[..., Any]) -> Any:
    """The application a factory builds; only factories callable without arguments."""
    try:
        signature = inspect.signature(factory)
        signature.bind()
    except TypeError:
        name = getattr(factory, "__name__", "factory")
        raise TypeError(
            f"{spec!r}: {name}() needs arguments; give every parameter a default, or point "
            "MODULE:ATTR at a function without parameters that builds the app"
        ) from None
    if inspect.iscoroutinefunction(factory):
        raise TypeError(f"{spec!r}: the factory is async; give a synchronous factory")
    try:
        return factory()
    except Exception as exc:
        name = getattr(factory, "__name__", "factory")
        raise FactoryError(
            f"{name}() raised {type(exc).__name__}: {exc} (the app is built as `uvicorn "
            "--factory` builds it, without arguments and often without production secrets: "
            "create clients that need an API key at start-up, in the app's lifespan; "
            "docs/testing.md)"
        ) from exc


def _apps_in(target: Any) -> list[Any]:
    """The ASGI applications and routers a module defines at its top level."""
    if not isinstance(target, ModuleType):
        return []
    found: dict[int, Any] = {}
    for value in vars(target).values():
        if not isinstance(value, type) and isinstance(getattr(value, "routes", None), list):
            found.setdefault(id(value), value)
    return list(found.values())


def _qualified(func: Any) -> str | None:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    return f"{module}.{qualname}"


def _routes_of(target: Any) -> Iterator[tuple[str, str, Callable[..., Any]]]:
    """(method, path, handler) for each route of a Starlette/FastAPI app or router."""
    routes = getattr(target, "routes", None)
    if not isinstance(routes, list):
        return
    for route in routes:
        func = getattr(route, "endpoint", None)
        path = getattr(route, "path", None)
        if callable(func) and isinstance(path, str):
            methods = sorted(getattr(route, "methods", None) or {"ANY"})
            for method in methods:
                if method != "HEAD":
                    yield method, path, func
        elif hasattr(route, "routes"):  # mounted sub-application or router
            yield from _routes_of(route)


def _find_function(name: str) -> Callable[..., Any] | None:
    """The module-level callable ``module.qualname`` names (handlers in a class too)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        value: Any = module
        for part in parts[cut:]:
            if part == "<locals>":
                return None
            value = getattr(value, part, None)
            if value is None:
                return None
        return value if callable(value) else None
    return None


# -- the document -------------------------------------------------------------------


def build_inventory(
    app: App, policy: Policy | None = None, *, policy_source: str | None = None
) -> dict[str, Any]:
    """The inventory document (JSON-ready) of ``app`` under ``policy``.

    Without a policy the guard the application defines is used; without either the
    document still lists endpoints and fields, with no actions.
    """
    if policy is None:
        policy = app.guard_policy()
        if policy is not None and policy_source is None:
            policy_source = "(the application's Guard)"
    infos = {info.name: info for info in registry()}
    endpoints = [_endpoint_entry(app, infos[name], policy) for name in app.names if name in infos]
    return {
        "schema": SCHEMA,
        "app": app.spec,
        "policy": policy_source,
        "mode": policy.mode if policy is not None else None,
        "endpoints": endpoints,
        "destinations": (
            {name: _destination_entry(policy, name) for name in sorted(policy.destinations)}
            if policy is not None
            else {}
        ),
    }


def _endpoint_entry(app: App, info: EndpointInfo, policy: Policy | None) -> dict[str, Any]:
    func = app.functions.get(info.name)
    file: str | None = None
    line: int | None = None
    training_default: bool | None = None
    takes_training = False
    response: list[dict[str, Any]] = []
    if func is not None:
        file, line = _source_of(func)
        signature = inspect.signature(func)
        param = signature.parameters.get("use_for_training")
        if param is not None:
            takes_training = True
            training_default = param.default is True
        for model in _models_of(signature.return_annotation):
            response.append(_model_entry("response", None, model, info, policy))
    request = [
        _model_entry("request", arg.argument, arg.model, info, policy) for arg in info.models
    ]
    destinations = _destinations_for(info, policy)
    spec = policy.purpose(info.purpose) if policy is not None else None
    return {
        "name": info.name,
        "file": file,
        "line": line,
        "routes": [{"method": m, "path": p} for m, p in app.routes.get(info.name, [])],
        "purpose": info.purpose,
        "destination": info.destination,
        "destinations": destinations,
        "is_async": info.is_async,
        "enabled": info.enabled,
        "consent": {
            "legal_basis": spec.legal_basis if spec is not None else None,
            "requires_consent": spec.requires_consent if spec is not None else None,
            "requires_training_flag": spec.requires_training_flag if spec is not None else None,
            "takes_use_for_training": takes_training,
            "use_for_training_default": training_default,
        },
        "models": request + response,
        "fields": [f for model in request for f in model["fields"]],
    }


def _destinations_for(info: EndpointInfo, policy: Policy | None) -> list[str]:
    """The declared destination, else every destination that serves the purpose."""
    if info.destination is not None:
        return [info.destination]
    if policy is None:
        return []
    return sorted(
        name for name, dest in policy.destinations.items() if info.purpose in dest.purposes
    )


def _model_entry(
    role: str,
    argument: str | None,
    model: type[BaseModel],
    info: EndpointInfo,
    policy: Policy | None,
) -> dict[str, Any]:
    prefix = argument or "return"
    tagged = list(classified_fields(model))
    tagged_roots = {f.path.split(".", 1)[0].split("[", 1)[0] for f in tagged}
    destinations = _destinations_for(info, policy)
    fields = []
    for tag in tagged:
        actions: dict[str, str | None] = {}
        for name in destinations:
            target = policy.destinations.get(name) if policy is not None else None
            actions[name] = (
                policy.action_for(target, tag.level, tag.kind).value
                if policy is not None and target is not None
                else None
            )
        fields.append(
            {
                "path": f"{prefix}.{tag.path}",
                "level": tag.level.label,
                "kind": tag.kind,
                "actions": actions,
            }
        )
    return {
        "role": role,
        "argument": argument,
        "model": f"{model.__module__}.{model.__qualname__}",
        "fields": fields,
        # Untagged fields are scanned by the detectors at run time; listed so a reviewer
        # can tag the ones that always hold personal data.
        "untagged": sorted(name for name in model.model_fields if name not in tagged_roots),
    }


def _destination_entry(policy: Policy, name: str) -> dict[str, Any]:
    dest = policy.destinations[name]
    return {
        "base_url": dest.base_url,
        "approved": dest.approved,
        "purposes": list(dest.purposes),
        "models": list(dest.models),
        "mode": policy.mode_for(name),
        "stage": dest.stage,
        "max_raw_level": dest.max_raw_level.label,
        "retention_days": dest.retention_days,
        "region": dest.region,
        "processor": dest.processor,
        "fail_open": dest.fail_open,
        # Where answers give originals back: which tools' call arguments, and in links.
        "restore_tool_arguments": (
            dest.restore_tool_arguments
            if isinstance(dest.restore_tool_arguments, bool)
            else list(dest.restore_tool_arguments)
        ),
        "restore_in_links": dest.restore_in_links,
        # What free-text findings get at each level (a kind rule can still override).
        "actions": {
            level.label: (
                policy.actions.for_level(level).value if level > dest.max_raw_level else "keep"
            )
            for level in Level
        },
        "kind_actions": {kind: action.value for kind, action in policy.actions.kinds.items()},
    }


def _models_of(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_of(arg)


def _source_of(func: Callable[..., Any]) -> tuple[str | None, int | None]:
    target = inspect.unwrap(func)
    try:
        file = inspect.getsourcefile(target)
        _, line = inspect.getsourcelines(target)
    except (OSError, TypeError):
        return None, None
    return file, line


# -- markdown -----------------------------------------------------------------------


def render_markdown(document: Mapping[str, Any]) -> str:
    """The inventory as a Markdown page a reviewer can read or paste into a ticket."""
    out = [f"# Inventory of `{document['app']}`", ""]
    policy = document.get("policy")
    out.append(f"Policy: {policy or 'none (no actions shown)'}. Mode: {document.get('mode')}.")
    out.append("")
    endpoints = document["endpoints"]
    if not endpoints:
        out.append("No endpoint uses `@guard.endpoint`.")
    out.append("| endpoint | routes | purpose | destinations | consent | fields |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for entry in endpoints:
        routes = ", ".join(f"{r['method']} {r['path']}" for r in entry["routes"]) or "-"
        consent = entry["consent"]
        needs = []
        if consent["requires_consent"]:
            needs.append("consent")
        if consent["requires_training_flag"]:
            needs.append("training flag")
        fields = len(entry["fields"])
        out.append(
            f"| `{entry['name']}` | {routes} | {entry['purpose']} | "
            f"{', '.join(entry['destinations']) or '-'} | {', '.join(needs) or '-'} | {fields} |"
        )
    for entry in endpoints:
        out += ["", f"## `{entry['name']}`", ""]
        if entry["file"]:
            out.append(f"Defined in `{entry['file']}` line {entry['line']}.")
        if not entry["enabled"]:
            out.append("**The guard is disabled on this handler (`enabled=False`).**")
        out.append("")
        out.append("| model | field | level | kind | actions |")
        out.append("| --- | --- | --- | --- | --- |")
        for model in entry["models"]:
            for f in model["fields"]:
                actions = ", ".join(f"{d}: {a}" for d, a in f["actions"].items()) or "-"
                out.append(
                    f"| {model['role']} `{model['model']}` | `{f['path']}` | {f['level']} | "
                    f"{f['kind']} | {actions} |"
                )
            if model["untagged"]:
                out.append(
                    f"| {model['role']} `{model['model']}` | "
                    f"{', '.join('`' + u + '`' for u in model['untagged'])} | detected at run time "
                    "| - | by level |"
                )
    destinations = document.get("destinations") or {}
    if destinations:
        out += ["", "## Destinations", ""]
        out.append(
            "| destination | approved | purposes | mode | stage | max raw | retention | region "
            "| processor |"
        )
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, d in destinations.items():
            out.append(
                f"| {name} | {'yes' if d['approved'] else 'no'} | {', '.join(d['purposes'])} | "
                f"{d['mode']} | {d['stage']} | {d['max_raw_level']} | "
                f"{d['retention_days'] if d['retention_days'] is not None else '-'} | "
                f"{d['region'] or '-'} | {d['processor'] or '-'} |"
            )
    return "\n".join(out) + "\n"
