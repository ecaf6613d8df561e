"""torch.compile (TorchInductor) of the two graphs, on the CPU (C++ kernels, needs a C++ compiler) or CUDA.

Inductor compiles at the first call of each shape family, not ahead of time: the engine folder
holds Inductor's on-disk cache (``inductor/``, keyed and validated by Inductor itself), and loading
compiles both graphs for batch 1 and for any batch, so the daemon pays it before READY. With a warm
cache that is about 15-30 s on a small CPU, against 1-2 min cold. ``freezing`` folds the weights
into the graph as constants, which lets the CPU kernels use pre-packed weights: about 1.6x faster
than without on the shipped dims.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from edge_dac.engines.backend import Backend, gpu_fields
from edge_dac.engines.graphs import ContextGraph, HearingGraph, StepGraph, step_arguments
from edge_dac.model.captioner import Captioner
from edge_dac.model.decoding import ChunkCache
from edge_dac.model.hearing import HEARING_CHUNK_SAMPLES

CACHE_FOLDER = "inductor"


class TorchCompileBackend(Backend):
    name = "torch-compile"
    precisions = ("fp32",)
    devices = ("cpu", "cuda")

    def missing(self, device: str) -> str | None:
        if reason := super().missing(device.split(":")[0]):
            return reason
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                return "no CUDA device"
            try:
                import triton  # noqa: F401
            except ImportError:
                return "triton is not installed (it comes with the CUDA builds of torch)"
        compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if not any(name and shutil.which(name) for name in compilers):
            return "no C++ compiler found (install g++, or set CXX)"
        return None

    def versions(self, device: str) -> dict[str, Any]:
        return {"torch": torch.__version__, **gpu_fields(device)}

    def build(self, captioner: Captioner, folder: Path, precision: str, max_batch: int | None, device: str) -> dict:
        (folder / CACHE_FOLDER).mkdir()
        return {"note": "inductor/ is TorchInductor's cache, filled when the engine is first loaded"}

    def load(self, captioner: Captioner, folder: Path, precision: str, device: str, threads: int | None):
        # Process-wide and read at every compilation: later recompiles land in the same folder.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / CACHE_FOLDER))
        runner = CompiledRunner(captioner.to(device).eval())
        runner.warm_up(captioner, device)
        return runner


class CompiledRunner:
    def __init__(self, captioner: Captioner):
        options = {"freezing": True}
        # Inductor's freezing pass fails on an event-memory audio graph with a dynamic batch (torch
        # 2.13: channels-last conv weights meet a symbolic stride it cannot materialise), so that
        # graph compiles without freezing.
        audio_options = {} if captioner.dims.event_memory else options
        self.context_graph = torch.compile(ContextGraph(captioner).eval(), dynamic=True, options=audio_options)
        self.step_graph = torch.compile(StepGraph(captioner).eval(), dynamic=True, options=options)
        self.dims = captioner.dims
        self.heard = None
        if captioner.hearing is not None:
            hearing = torch.compile(HearingGraph(captioner).eval(), dynamic=True, options=options)
            self.heard = ChunkCache(HEARING_CHUNK_SAMPLES, hearing)

    def context(
        self, windows: torch.Tensor, candidates: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        heard = (self.heard.features(windows),) if self.heard is not None else ()
        keys, values, *events = self.context_graph(windows, *heard)
        kv = keys.repeat_interleave(candidates, dim=0), values.repeat_interleave(candidates, dim=0)
        return kv, events[0].float().cpu() if events else None

    def step(self, noisy, t, self_cond, code, context):
        keys, values = context
        return self.step_graph(*step_arguments(self.dims, noisy, t.contiguous(), self_cond, code, keys, values))

    def warm_up(self, captioner: Captioner, device: str) -> None:
        """Compile now for batch 1 and for any batch (Inductor specialises size 1, the rest is one graph)."""
        dims = captioner.dims
        with torch.inference_mode():
            for windows in (1, 2):
                context, _ = self.context(torch.zeros(windows, dims.max_audio_samples, device=device), 1)
                latent = torch.zeros(windows, dims.max_caption_tokens, dims.embedding_dim, device=device)
                code = torch.zeros(windows, dtype=torch.long, device=device)
                self.step(latent, torch.ones(windows, device=device), latent.clone(), code, context)
