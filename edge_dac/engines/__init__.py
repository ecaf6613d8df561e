"""Inference engines: one ``CaptionEngine`` interface over the backends a machine has.

Today: ``eager`` (plain PyTorch, CPU or CUDA). The compiled backends (torch-compile, ONNX Runtime,
TensorRT) and ``backend: auto`` selection plug in here.
"""

from edge_dac.engines.base import CaptionEngine, EagerEngine, load_engine, model_id_of

__all__ = ["CaptionEngine", "EagerEngine", "load_engine", "model_id_of"]
