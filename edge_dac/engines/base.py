"""The engine interface used by the daemon, ``edge-dac caption`` and ``edge-dac eval``.

Every backend runs ``edge_dac.model.decoding.DecodingTask`` with its own ``Runner`` (audio graph
once per window, denoiser step graph per step). Only the two graph calls differ between backends;
the task draws the starting noise on the CPU from the seed and each window's samples, so every
backend (CPU or GPU) starts from the very same numbers and fp32 backends write the very same captions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_dac.engines.store import file_sha256
from edge_dac.errors import EdgeDacError
from edge_dac.model.captioner import Captioner
from edge_dac.model.checkpoint import WEIGHTS_FILE
from edge_dac.model.decoding import Candidate, DecodingOptions, DecodingTask, EagerRunner, Runner


def model_id_of(model_dir: Path) -> str:
    """``<folder name>@<first 12 hex of the weights' sha256>``: names the exact weights in every message."""
    return f"{model_dir.resolve().name}@{file_sha256(model_dir / WEIGHTS_FILE)[:12]}"


class CaptionEngine:
    """Turns (batch, samples) float32 windows at ``sample_rate`` into ranked candidate captions."""

    backend = "none"

    def __init__(
        self,
        captioner: Captioner,
        model_id: str,
        seed: int = 0,
        runner: Runner | None = None,
        device: str = "cpu",
        max_windows: int | None = None,
    ):
        self.captioner = captioner
        self.model_id = model_id
        self.seed = seed
        self.sample_rate = captioner.dims.sample_rate
        self.window_samples = captioner.dims.max_audio_samples
        self.runner = runner
        self.device = device
        # Engines built for a batch range (TensorRT) take at most this many windows / step rows a call.
        self.max_windows = max_windows
        self.max_rows: int | None = None
        self.precision = "fp32"
        self.folder: Path | None = None  # the built engine's folder, for compiled backends
        # How hard the event head steers the words (0: off); the daemon sets it from its config.
        self.event_guidance = DecodingOptions.event_guidance

    def caption(
        self, windows: np.ndarray, steps: int = DecodingOptions.steps, candidates: int = DecodingOptions.candidates
    ) -> list[list[Candidate]]:
        if self.runner is None:
            raise NotImplementedError
        # The AR twin's K candidates are its K best beams.
        beams = candidates if self.captioner.dims.kind == "ar" else 1
        options = DecodingOptions(
            steps=steps, candidates=candidates, beam_size=beams, seed=self.seed, event_guidance=self.event_guidance
        )
        try:
            task = DecodingTask(self.captioner, options, self.runner, self.max_rows, self.max_windows)
        except ValueError as error:
            raise EdgeDacError(str(error)) from None
        return task.run(windows)

    def warm_up(self, batch: int = 1) -> None:
        """One pass on silence, so the first real window does not pay for allocation and compilation."""
        self.caption(np.zeros((batch, self.window_samples), dtype=np.float32), steps=1, candidates=1)


class EagerEngine(CaptionEngine):
    """Plain PyTorch: always available, the reference every other backend must match."""

    backend = "eager"

    def __init__(self, captioner: Captioner, model_id: str, seed: int = 0, device: str = "cpu"):
        captioner = captioner.to(device).eval()
        super().__init__(captioner, model_id, seed, runner=EagerRunner(captioner), device=device)
