"""Timing a model on one thread: the engine to time (reloaded with one thread where its backend
fixes its threads at load), its DAC step runner, and flat speed keys for metrics.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from edge_dac.engines import CaptionEngine, load_engine
from edge_dac.evaluation.speed import SpeedResult


def one_thread_engine(engine: CaptionEngine, model_dir: Path) -> CaptionEngine:
    """The engine to time on one thread: eager obeys ``torch.set_num_threads``, a compiled backend
    (ONNX Runtime sessions) fixes its threads when it loads, so it is loaded again with one."""
    if engine.backend == "eager":
        return engine
    previous = torch.get_num_threads()
    try:
        return load_engine(model_dir, backend=engine.backend, threads=1)
    finally:
        torch.set_num_threads(previous)  # load_engine(threads=...) sets torch's global count


def decode_runner(engine: CaptionEngine) -> object | None:
    """The engine's step runner for timing DAC decoding alone; None for AR (eager decoder)."""
    return getattr(engine, "runner", None) if engine.captioner.dims.kind == "dac" else None


def speed_metrics(results: Sequence[SpeedResult]) -> dict[str, float]:
    """Flat keys for metrics.json: ``aps_pipeline_b1``, ``tps_decode_b32``, ..."""
    flat = {}
    for result in results:
        flat[f"aps_{result.stage}_b{result.batch_size}"] = round(result.aps, 3)
        flat[f"tps_{result.stage}_b{result.batch_size}"] = round(result.tps, 2)
    return flat
