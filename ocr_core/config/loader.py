"""PaddleOCR-style YAML loading with ``-o Section.key=value`` overrides.

Values in overrides are parsed as YAML (``null`` -> None, ``[1, 2]`` -> list, ``true`` -> bool);
dotted paths walk nested mappings and lists (``Train.dataset.transforms.3.EastRandomCropData.size``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from ocr_core.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys (PyYAML keeps the last; so do we, but we know)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads ``1e-4`` (no dot) as a string, which then fails deep inside an optimizer; we
# read it as the float every user means.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict; errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        with p.open("r", encoding="utf-8-sig") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=where) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 ({exc.reason} at byte {exc.start})", file=str(p)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of sections", file=str(p))
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``A.b.c=value`` into (["A","b","c"], parsed value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like Section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key component")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() != "" else ""  # noqa: S506
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(cfg: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` inside ``cfg``.

    The first component must name an existing section (as in PaddleOCR); intermediate mappings
    must exist; the last component may be new. Integer components index lists.
    """
    dotted = ".".join(path)
    if path[0] not in cfg:
        raise ConfigError(f"unknown section {path[0]!r} (sections: {', '.join(cfg)})", dotted)
    node: Any = cfg
    for i, part in enumerate(path[:-1]):
        node = _child(node, part, ".".join(path[: i + 1]))
    last = path[-1]
    if isinstance(node, list):
        named = [e for e in node if isinstance(e, dict) and last in e]
        if not last.lstrip("-").isdigit() and named:
            named[0][last] = value  # Train.dataset.transforms.DetResizeForTest={...}
            return
        idx = _index(node, last, dotted)
        node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"cannot set a key inside a {type(node).__name__}", dotted)


def _index(node: list[Any], part: str, where: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise ConfigError(f"{part!r} is not a list index", where) from None
    if not -len(node) <= idx < len(node):
        raise ConfigError(f"list index {idx} out of range (length {len(node)})", where)
    return idx


def _child(node: Any, part: str, where: str) -> Any:
    if isinstance(node, dict):
        if part in node and node[part] is not None:
            return node[part]
        if part in node and node[part] is None:
            node[part] = {}
            return node[part]
        # transform lists are [{Op: {...}}]: allow addressing an op by name inside a list
        raise ConfigError("no such key", where)
    if isinstance(node, list):
        if part.lstrip("-").isdigit():
            return node[_index(node, part, where)]
        for entry in node:  # Train.dataset.transforms.EastRandomCropData.size
            if isinstance(entry, dict) and part in entry:
                if entry[part] is None:
                    entry[part] = {}
                return entry[part]
        raise ConfigError("no list entry with that name", where)
    raise ConfigError(f"cannot descend into a {type(node).__name__}", where)


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a config file (or start from ``base``) and apply ``-o`` overrides in order.

    The returned dict carries the source file name under ``Global._config_file`` only in memory
    (it is dropped by :func:`dump_config`).
    """
    cfg = load_yaml(path) if path is not None else copy.deepcopy(base or {})
    src = str(path) if path is not None else "<config>"
    for item in overrides or []:
        try:
            keys, value = parse_override(item)
            apply_override(cfg, keys, value)
        except ConfigError as exc:
            raise exc.with_file(f"-o {item}") from None
    cfg.setdefault("Global", {})
    if cfg["Global"] is None:
        cfg["Global"] = {}
    if not isinstance(cfg["Global"], dict):
        raise ConfigError(f"a section must be a mapping, got {type(cfg['Global']).__name__}", "Global", file=src)
    cfg["Global"]["_config_file"] = src
    return cfg


def public_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config without in-memory bookkeeping keys (those starting with ``_``)."""
    out = copy.deepcopy(cfg)
    glob = out.get("Global") or {}
    for key in [k for k in glob if str(k).startswith("_")]:
        glob.pop(key)
    return out


def dump_config(cfg: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (``config.yml`` beside outputs)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(public_config(cfg), fh, sort_keys=False, allow_unicode=True)


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable sha256 of the resolved config (used for cache keys and export metadata)."""
    blob = json.dumps(public_config(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
