"""Exceptions shared across ocr_core. Each carries where the problem is (file, line, key path)."""

from __future__ import annotations


class OCRFlowError(Exception):
    """Base class for errors we report to users without a traceback."""


class ConfigError(OCRFlowError):
    """A config value is unknown, missing or of the wrong type.

    Args:
        message: What is wrong.
        key_path: Dotted path of the offending key (``Train.loader.batch_size_per_card``).
        file: The config file the key came from, if known.
    """

    def __init__(self, message: str, key_path: str = "", file: str | None = None) -> None:
        self.message = message
        self.key_path = key_path
        self.file = file
        super().__init__(self._render())

    def _render(self) -> str:
        loc = ": ".join(p for p in (self.file, self.key_path) if p)
        return f"{loc}: {self.message}" if loc else self.message

    def with_file(self, file: str) -> ConfigError:
        """Return the same error annotated with the config file name."""
        if self.file is None:
            self.file = file
            self.args = (self._render(),)
        return self


class DataError(OCRFlowError):
    """A label file or image is malformed; the message names ``file:line``."""


class Preempted(OCRFlowError):
    """Training stopped on SIGTERM (eviction, preemption) after saving ``latest``; retry to resume.

    ``EXIT_CODE`` (143 = 128 + SIGTERM) is in the range the training operator's ``ExitCode``
    restart policy treats as retryable (128-255).
    """

    EXIT_CODE = 143
