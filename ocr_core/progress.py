"""Progress reporting that is a live bar on a terminal and sparse plain lines elsewhere.

In CI logs and Kubernetes pods (stdout/stderr not a TTY) a carriage-return progress bar turns
into megabytes of noise; there we print at most ``max_lines`` plain lines per loop instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def is_tty(stream: Any = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _LineProgress:
    """Plain-line progress: prints ``desc: n/total (pct) rate ETA`` about ``max_lines`` times."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str,
                 unit: str, max_lines: int, stream: Any) -> None:
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream
        self.n = 0
        self.start = time.monotonic()
        self.every = max(1, (total or 0) // max(1, max_lines)) if total else None
        self.last_print = self.start
        self.postfix = ""

    def _line(self) -> str:
        el = time.monotonic() - self.start
        rate = self.n / el if el > 0 else 0.0
        if self.total:
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            return (f"{self.desc}: {self.n}/{self.total} ({100 * self.n / self.total:.0f}%) "
                    f"{rate:.2f} {self.unit}/s eta {eta:.0f}s{self.postfix}")
        return f"{self.desc}: {self.n} {self.unit} {rate:.2f} {self.unit}/s{self.postfix}"

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        due = (self.every and (self.n % self.every == 0 or self.n == self.total)) or (
            not self.every and now - self.last_print > 30)
        if due:
            self.last_print = now
            print(self._line(), file=self.stream, flush=True)

    def set_postfix_str(self, s: str) -> None:
        self.postfix = f" {s}" if s else ""

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for item in self.iterable:
            yield item
            self.update()

    def close(self) -> None:
        pass

    def __enter__(self) -> _LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool = False, max_lines: int = 10, stream: Any = None) -> Any:
    """A tqdm bar on a TTY, otherwise a :class:`_LineProgress`; both support ``update`` and iteration."""
    stream = stream if stream is not None else sys.stderr
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if disable:
        return tqdm(iterable, total=total, disable=True)
    if is_tty(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True)
    return _LineProgress(iterable, total, desc, unit, max_lines, stream)
