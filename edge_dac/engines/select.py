"""Choosing, building and loading an engine: ``load_engine`` and ``export_engine``.

``auto`` tries the backends in the order ``bench/engines.py`` measured (fastest first) and takes
the first that loads; it logs the choice and, for every backend before it, why it was skipped.
Measured on one CPU thread with the shipped dims (bench/engines.py, engines/README.md): onnxruntime
fp32 3.0x eager at batch 1, torch-compile 2.8x (and 15 s-3 min of compilation at every start-up).
On CUDA nothing was measured on our machines yet: TensorRT first is NVIDIA's own promise, then
Inductor, then eager; ``bench/gpu_check.py`` prints the table that should confirm or reorder it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from edge_dac.const import default_engines_dir, default_model_dir
from edge_dac.engines.backend import Backend
from edge_dac.engines.base import CaptionEngine, EagerEngine, model_id_of
from edge_dac.engines.compile_engine import TorchCompileBackend
from edge_dac.engines.graphs import GRAPH_VERSION, MAX_CANDIDATES
from edge_dac.engines.onnxruntime_engine import OnnxRuntimeBackend
from edge_dac.engines.store import file_sha256, obtain, read_manifest
from edge_dac.engines.tensorrt_engine import TensorRTBackend
from edge_dac.errors import EdgeDacError, first_line
from edge_dac.model.captioner import Captioner
from edge_dac.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_captioner

COMPILED: dict[str, Backend] = {
    backend.name: backend for backend in (OnnxRuntimeBackend(), TorchCompileBackend(), TensorRTBackend())
}
BACKENDS = ("eager", *COMPILED)
CHOICES = ("auto", "cpu", "cuda", *BACKENDS)
AUTO_ORDER = {"cpu": ("onnxruntime", "torch-compile", "eager"), "cuda": ("tensorrt", "torch-compile", "eager")}
DEFAULT_MAX_BATCH = 32  # TensorRT's batch range when none is asked for


def load_engine(
    model: str | Path | None = None,
    backend: str = "auto",
    threads: int | None = None,
    device: str = "cpu",
    *,
    engines_dir: str | Path | None = None,
    precision: str | None = None,
    max_batch: int | None = None,
    order: tuple[str, ...] | None = None,
    seed: int = 0,
) -> CaptionEngine:
    """The engine for a checkpoint directory (default: the shipped model) on the chosen backend.

    ``backend``: ``auto`` (the fastest this machine has), ``cpu``/``cuda`` (the fastest on that
    device), or one of ``eager``, ``torch-compile``, ``onnxruntime``, ``tensorrt``. Compiled
    backends build their engine on first use and reuse it afterwards.
    ``auto`` looks at CUDA first when a CUDA device is usable (``device`` "cpu" is the default and
    does not stop it), ``cpu``/``cuda`` only at that device. ``order`` replaces the automatic order.
    ``precision``/``max_batch``: as for ``edge-dac export`` (default: the backend's first precision;
    any already built batch range, else 32, for TensorRT).
    """
    if backend not in CHOICES:
        raise EdgeDacError(f"unknown backend {backend!r} (choose from: {', '.join(CHOICES)})")
    if threads:
        torch.set_num_threads(threads)
    model_dir = Path(model) if model else default_model_dir()
    captioner = load_captioner(model_dir)
    model_id = model_id_of(model_dir)
    root = Path(engines_dir) if engines_dir else default_engines_dir()
    if backend in BACKENDS:
        reason = unavailable(backend, device, captioner, precision)
        if reason:
            raise EdgeDacError(f"backend {backend} cannot run here: {reason}")
        return _open(backend, captioner, model_dir, model_id, root, device, threads, precision, max_batch, seed)
    if backend == "cuda" or device.startswith("cuda"):
        plan = [(name, device if device.startswith("cuda") else "cuda") for name in AUTO_ORDER["cuda"]]
    elif backend == "cpu":
        plan = [(name, "cpu") for name in AUTO_ORDER["cpu"]]
    else:
        # Without CUDA only TensorRT is listed from the GPU side: its skip reason tells users what they miss.
        gpu = AUTO_ORDER["cuda"] if torch.cuda.is_available() else ("tensorrt",)
        plan = [(name, "cuda") for name in gpu] + [(name, "cpu") for name in AUTO_ORDER["cpu"]]
    if order:
        plan = [(name, where) for name, where in plan if name in order]
        plan.sort(key=lambda item: order.index(item[0]))
    skipped = []
    for name, where in plan:
        # Precision and batch requests apply to the backends that have them; auto never fails on them.
        wanted = precision if precision in _precisions(name) else None
        reason = unavailable(name, where, captioner, wanted)
        if reason is None:
            try:
                engine = _open(name, captioner, model_dir, model_id, root, where, threads, wanted, max_batch, seed)
            except Exception as error:  # noqa: BLE001 - any failure of one backend means: try the next
                reason = f"failed to load ({first_line(error)})"
            else:
                for skipped_name, why in skipped:
                    logger.info(f"engine auto: skipped {skipped_name}: {why}")
                logger.info(f"engine auto: {name} on {where} for {model_id} (fastest available)")
                return engine
        skipped.append((f"{name} ({where})", reason))
    raise EdgeDacError("no backend could load: " + "; ".join(f"{name}: {why}" for name, why in skipped))


def _precisions(backend: str) -> tuple[str, ...]:
    return COMPILED[backend].precisions if backend in COMPILED else ("fp32",)


def unavailable(backend: str, device: str, captioner: Captioner, precision: str | None = None) -> str | None:
    """Why ``backend`` cannot run ``captioner`` on ``device`` at ``precision`` (one line), or None."""
    if precision is not None and precision not in _precisions(backend):
        return f"offers {' or '.join(_precisions(backend))}, not {precision}"
    if backend == "eager":
        if device.startswith("cuda") and not torch.cuda.is_available():
            return "no CUDA device"
        return None
    if captioner.dims.kind != "dac":
        return "compiles DAC (diffusion) models only; autoregressive models run on eager"
    return COMPILED[backend].missing(device)


def key_fields(
    backend: Backend, model_dir: Path, captioner: Captioner, device: str, precision: str, max_batch: int | None
) -> dict[str, Any]:
    """What the engine's cache key hashes (and its manifest records)."""
    return {
        "backend": backend.name,
        "precision": precision,
        "device": device.split(":")[0],
        "batch": [1, max_batch],  # null: any batch (the graphs have a dynamic batch)
        "max_candidates": MAX_CANDIDATES if backend.batch_range else None,
        "graph_version": GRAPH_VERSION,
        "model": {
            "weights_sha256": file_sha256(model_dir / WEIGHTS_FILE),
            "config_sha256": file_sha256(model_dir / CONFIG_FILE),
            "dims": captioner.dims.to_dict(),
        },
        "versions": backend.versions(device),
    }


def _open(
    name: str,
    captioner: Captioner,
    model_dir: Path,
    model_id: str,
    root: Path,
    device: str,
    threads: int | None,
    precision: str | None,
    max_batch: int | None,
    seed: int,
    rebuild: bool = False,
) -> CaptionEngine:
    if name == "eager":
        return EagerEngine(captioner, model_id, seed=seed, device=device)
    backend = COMPILED[name]
    precision = precision or backend.precisions[0]
    asked_batch = max_batch
    max_batch = (max_batch or DEFAULT_MAX_BATCH) if backend.batch_range else None
    fields = key_fields(backend, model_dir, captioner, device, precision, max_batch)
    label = f"{model_dir.resolve().name}-{name}-{precision}"

    def build(folder: Path) -> dict:
        logger.info(f"building the {name} {precision} engine for {model_id} (once; reused afterwards) ...")
        started = time.perf_counter()
        extra = backend.build(captioner, folder, precision, max_batch, device)
        logger.info(f"built the {name} engine in {time.perf_counter() - started:.0f} s")
        return {"model": {"id": model_id, "path": str(model_dir.resolve())}, **extra}

    folder = obtain(root, label, fields, build, any_batch=backend.batch_range and asked_batch is None, rebuild=rebuild)
    manifest_batch = _manifest_batch(folder)
    try:
        runner = backend.load(captioner, folder, precision, device, threads)
    except Exception as error:  # noqa: BLE001 - a runtime that refuses its own engine: say so in one line
        raise EdgeDacError(
            f"the {name} engine in {folder} does not load ({first_line(error)}); "
            f"rebuild it: edge-dac export --backend {name} --rebuild"
        ) from None
    engine = CaptionEngine(captioner, model_id, seed=seed, runner=runner, device=device)
    engine.backend = name
    engine.folder = folder
    engine.precision = precision
    if backend.batch_range and manifest_batch:
        engine.max_windows, engine.max_rows = manifest_batch, manifest_batch * MAX_CANDIDATES
    return engine


def _manifest_batch(folder: Path) -> int | None:
    fields = read_manifest(folder)["key_fields"]
    return (fields.get("batch") or [1, None])[1]


def export_engine(
    model: str | Path,
    backend: str,
    precision: str | None = None,
    max_batch: int | None = None,
    engines_dir: str | Path | None = None,
    device: str | None = None,
    rebuild: bool = False,
) -> CaptionEngine:
    """Build (or verify and reuse) the engine for ``backend`` and load it once: ``edge-dac export``."""
    if backend not in COMPILED:
        raise EdgeDacError(
            f"--backend {backend!r}: choose one of {', '.join(COMPILED)} (eager has nothing to export)"
        )
    compiled = COMPILED[backend]
    if precision is not None and precision not in compiled.precisions:
        raise EdgeDacError(f"--precision {precision}: {backend} offers {' or '.join(compiled.precisions)}")
    if max_batch is not None and not compiled.batch_range:
        raise EdgeDacError(f"--max-batch applies to tensorrt engines only ({backend} graphs take any batch)")
    if max_batch is not None and not 1 <= max_batch <= 4096:
        raise EdgeDacError(f"--max-batch must be between 1 and 4096, got {max_batch}")
    device = device or compiled.devices[0]
    model_dir = Path(model)
    captioner = load_captioner(model_dir)
    reason = unavailable(backend, device, captioner, precision)
    if reason:
        raise EdgeDacError(f"cannot export for {backend}: {reason}")
    root = Path(engines_dir) if engines_dir else default_engines_dir()
    return _open(
        backend, captioner, model_dir, model_id_of(model_dir), root, device, None, precision, max_batch, 0, rebuild
    )
