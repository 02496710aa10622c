"""Torch-free inference on exported ONNX models: onnxruntime predictors and the det+rec TextSystem.

``metadata`` is the contract between the exporter (which writes it) and these predictors (which
read nothing else): pre/post-processing settings embedded in the ONNX file. Nothing here imports
torch or the model code.
"""
