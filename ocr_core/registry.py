"""Name -> class registries with lazy module import.

Every buildable thing (backbones, necks, heads, losses, transforms, post-processors, metrics,
datasets) lives in one registry per kind. A registry knows which modules define its members and
imports them only on first lookup, so importing ``ocr_core`` stays cheap.

Config sections name a member with ``name:`` (or, for transform lists, the single mapping key);
the remaining keys are constructor keyword arguments. :func:`check_kwargs` validates them
against the constructor's signature so unknown keys and wrong types fail with the key path;
:func:`check_dataclass` does the same for a config section typed by a dataclass.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import importlib.util
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ocr_core.errors import ConfigError


class Registry:
    """A lazily populated ``name -> class`` table.

    Args:
        kind: What the registry holds (used in error messages), e.g. ``"backbone"``.
        modules: Dotted module names that register members when imported.
    """

    def __init__(self, kind: str, modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self._modules = list(modules)
        self._table: dict[str, Callable[..., Any]] = {}
        self._loaded = False

    def register(self, name: str | None = None) -> Callable[[Any], Any]:
        """Decorator adding a class (or factory) under ``name`` (default: its ``__name__``)."""

        def deco(obj: Any) -> Any:
            key = name or obj.__name__
            if key in self._table and self._table[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._table[key] = obj
            return obj

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for mod in self._modules:
                # Planned modules that do not exist yet are skipped; a module that exists but
                # fails to import (a missing dependency, a bug) still raises.
                if importlib.util.find_spec(mod) is not None:
                    importlib.import_module(mod)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._table

    def get(self, name: str, where: str = "") -> Callable[..., Any]:
        """Return the member ``name`` or raise a :class:`ConfigError` listing the choices."""
        self._load()
        if name not in self._table:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}", where
            )
        return self._table[name]

    def build(self, cfg: dict[str, Any] | None, where: str = "", **extra: Any) -> Any:
        """Build from a config mapping holding ``name`` plus constructor kwargs.

        ``extra`` kwargs (e.g. ``in_channels`` wired by the model) are passed unvalidated.
        """
        if not isinstance(cfg, dict) or "name" not in cfg:
            raise ConfigError(f"a {self.kind} section needs a 'name' key", where)
        kwargs = {k: v for k, v in cfg.items() if k != "name"}
        cls = self.get(cfg["name"], f"{where}.name" if where else "name")
        check_kwargs(cls, kwargs, where, skip=set(extra))
        return cls(**kwargs, **extra)


# --------------------------------------------------------------------------------------------
# Signature-based validation
# --------------------------------------------------------------------------------------------


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(args) == len(value) and all(_type_ok(v, a) for v, a in zip(value, args))
        return all(_type_ok(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def check_kwargs(cls: Any, kwargs: dict[str, Any], where: str, skip: set[str] | None = None) -> None:
    """Validate config kwargs against ``cls.__init__`` (or a function's) signature.

    Raises:
        ConfigError: naming ``where.key`` for an unknown key or a value of the wrong type.
    """
    target = cls.__init__ if inspect.isclass(cls) else cls
    sig = inspect.signature(target)
    params = {n: p for n, p in sig.parameters.items() if n != "self"}
    accepts_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward refs: fall back to no type checks
        hints = {}
    prefix = f"{where}." if where else ""
    for key, value in kwargs.items():
        if skip and key in skip:
            continue
        if key not in params or params[key].kind in (
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            if accepts_var_kw:
                continue
            known = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY]
            raise ConfigError(
                f"unknown key {key!r} for {getattr(cls, '__name__', cls)}; known keys: {', '.join(known)}",
                f"{prefix}{key}",
            )
        hint = hints.get(key, inspect.Parameter.empty)
        if not _type_ok(value, hint):
            raise ConfigError(
                f"expected {_hint_name(hint)}, got {type(value).__name__} {value!r}", f"{prefix}{key}"
            )
    missing = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in kwargs
        and not (skip and n in skip)
    ]
    if missing:
        raise ConfigError(f"missing required key(s): {', '.join(missing)}", where)


def check_dataclass(cls: type, data: Any, where: str) -> Any:
    """Validate ``data`` against dataclass ``cls`` and return an instance."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if str(key).startswith("_"):
            continue
        if key not in names:
            raise ConfigError(f"unknown key {key!r}; known keys: {', '.join(sorted(names))}", f"{where}.{key}")
        if not _type_ok(value, hints[key]):
            raise ConfigError(
                f"expected {_hint_name(hints[key])}, got {type(value).__name__} {value!r}", f"{where}.{key}"
            )
    return cls(**{k: v for k, v in data.items() if not str(k).startswith("_")})
