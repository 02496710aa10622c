"""Weight files: the OCRFlow checkpoint format, readers of foreign formats and the importers.

``checkpoint`` (save/load, reported weight loading), ``paddle_import`` (safe ``.pdparams``
reader, Paddle name mapping, ``ocrflow weights import-paddle``), ``openocr_import``,
``onnx_weights`` + ``layer_match`` + ``ppocr_weights`` (the official PP-OCRv3 ONNX models).
Nothing here imports the engine, the exporter or ``ocr_core.build``.
"""
