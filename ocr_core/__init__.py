"""OCRFlow's ML library: PP-OCR-style detection and recognition in PyTorch.

This package never imports ``kfp`` or ``kubernetes``; the pipeline layer lives in
``components/`` and ``pipelines/``.
"""

__version__ = "0.1.0"
