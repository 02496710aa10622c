"""Worker entry point: ``torchrun --nproc_per_node N -m ocr_core.train -c CONFIG -o ...``.

Same flags as ``ocrflow train``; used by the local launcher and by PyTorchJob workers.
"""

from __future__ import annotations

import sys

from ocr_core.cli import main


def run(argv: list[str] | None = None) -> int:
    return main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
