"""Inference engines: one ``CaptionEngine`` interface over the backends a machine has.

Backends: ``eager`` (plain PyTorch, CPU or CUDA; the reference), ``onnxruntime`` (CPU, fp32 or
int8), ``torch-compile`` (TorchInductor, CPU or CUDA) and ``tensorrt`` (torch-tensorrt, CUDA, fp16
or fp32). ``load_engine(backend="auto")`` takes the fastest that loads; compiled engines are built
once into the engines folder (``edge-dac export`` or the first start) and reused.
"""

from edge_dac.engines.base import CaptionEngine, EagerEngine, model_id_of
from edge_dac.engines.select import load_engine

__all__ = ["CaptionEngine", "EagerEngine", "load_engine", "model_id_of"]
