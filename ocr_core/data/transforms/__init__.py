"""Building and running transform pipelines (``...dataset.transforms`` config lists).

A transform is a registered class whose ``__call__(data: dict)`` returns the updated dict, or
None to reject the sample. Ops are looked up in :data:`ocr_core.data.TRANSFORMS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Callable, Optional

from ocr_core.errors import ConfigError
from ocr_core.registry import check_kwargs

# Global keys handed to every op whose constructor takes them (unless the op sets them itself).
GLOBAL_KEYS = ("character_dict_path", "max_text_length", "use_space_char")


def _accepts(cls: Any, key: str) -> bool:
    target = cls.__init__ if inspect.isclass(cls) else cls
    params = inspect.signature(target).parameters
    return key in params and params[key].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def create_operators(
    op_list: Optional[Sequence[Any]], global_cfg: Optional[dict[str, Any]] = None, where: str = "transforms"
) -> list[Callable[[dict[str, Any]], Any]]:
    """Instantiate a transform list.

    Args:
        op_list: Entries ``{OpName: kwargs | None}`` (a single key each).
        global_cfg: The ``Global`` section. ``character_dict_path``, ``max_text_length`` and
            ``use_space_char`` are passed to ops whose signature names them, unless the op's
            own kwargs set them (unlike PaddleOCR, a local value wins) or the global value is
            None.
        where: Key path for error messages.

    Raises:
        ConfigError: for a malformed entry, an unknown op, or bad kwargs (naming the entry).
    """
    from ocr_core.data import TRANSFORMS

    if op_list is None:
        return []
    if not isinstance(op_list, (list, tuple)):
        raise ConfigError(f"expected a list of transforms, got {type(op_list).__name__}", where)
    ops = []
    for i, entry in enumerate(op_list):
        op_where = f"{where}[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError("each transform must be a single-key mapping {OpName: {args}}", op_where)
        ((name, kwargs),) = entry.items()
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"arguments must be a mapping, got {type(kwargs).__name__}", f"{op_where}.{name}")
        cls = TRANSFORMS.get(name, op_where)
        kwargs = dict(kwargs)
        for key in GLOBAL_KEYS:
            if global_cfg and global_cfg.get(key) is not None and key not in kwargs and _accepts(cls, key):
                kwargs[key] = global_cfg[key]
        check_kwargs(cls, kwargs, f"{op_where}.{name}")
        ops.append(cls(**kwargs))
    return ops


def transform(data: Any, ops: Optional[Sequence[Callable[[Any], Any]]] = None) -> Any:
    """Run ``ops`` in order; return None as soon as one rejects the sample."""
    for op in ops or ():
        data = op(data)
        if data is None:
            return None
    return data


__all__ = ["GLOBAL_KEYS", "create_operators", "transform"]
