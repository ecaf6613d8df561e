"""The engine interface used by the daemon, ``edge-dac caption`` and ``edge-dac eval``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from edge_dac.errors import EdgeDacError
from edge_dac.model.captioner import Captioner
from edge_dac.model.checkpoint import WEIGHTS_FILE, load_captioner
from edge_dac.model.decoding import Candidate, DecodingOptions

BACKENDS = ("auto", "eager")


def model_id_of(model_dir: Path) -> str:
    """``<folder name>@<first 12 hex of the weights' sha256>``: names the exact weights in every message."""
    digest = hashlib.sha256()
    with open(model_dir / WEIGHTS_FILE, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return f"{model_dir.resolve().name}@{digest.hexdigest()[:12]}"


class CaptionEngine:
    """Turns (batch, samples) float32 windows at ``sample_rate`` into ranked candidate captions."""

    backend = "none"

    def __init__(self, captioner: Captioner, model_id: str, seed: int = 0):
        self.captioner = captioner
        self.model_id = model_id
        self.seed = seed
        self.sample_rate = captioner.dims.sample_rate
        self.window_samples = captioner.dims.max_audio_samples

    def caption(self, windows: np.ndarray, steps: int = 6, candidates: int = 5) -> list[list[Candidate]]:
        raise NotImplementedError

    def warm_up(self, batch: int = 1) -> None:
        """One pass on silence, so the first real window does not pay for allocation and compilation."""
        self.caption(np.zeros((batch, self.window_samples), dtype=np.float32), steps=1, candidates=1)


class EagerEngine(CaptionEngine):
    """Plain PyTorch: always available, the reference every other backend must match."""

    backend = "eager"

    def __init__(self, captioner: Captioner, model_id: str, seed: int = 0, device: str = "cpu"):
        super().__init__(captioner.to(device).eval(), model_id, seed)
        self.device = device

    def caption(self, windows: np.ndarray, steps: int = 6, candidates: int = 5) -> list[list[Candidate]]:
        kind = self.captioner.dims.kind
        options = DecodingOptions(
            steps=steps, candidates=candidates, beam_size=candidates if kind == "ar" else 1, seed=self.seed
        )
        with torch.inference_mode():
            return self.captioner.generate(torch.as_tensor(windows, dtype=torch.float32), options)


def load_engine(
    model: str | Path | None = None, backend: str = "auto", threads: int | None = None, device: str = "cpu"
) -> CaptionEngine:
    """The engine for a checkpoint directory (default: the shipped model) on the chosen backend."""
    from edge_dac.caption import default_model_dir

    if backend not in BACKENDS:
        raise EdgeDacError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
    if threads:
        torch.set_num_threads(threads)
    model_dir = Path(model) if model else default_model_dir()
    captioner = load_captioner(model_dir)
    return EagerEngine(captioner, model_id_of(model_dir), device=device)
